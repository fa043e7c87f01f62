"""String ops and TfIdfVectorizer against onnxruntime."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from onnx import helper

import webinfer
from tests.ops.util import assert_close, make_model, run_both

rng = np.random.default_rng(0)
WORDS = np.array(["Monday", "tuesday", "MONDAY", "été", "Straße", "", "a b", "  x  y ", "Ünïcode", "tab\tsep"],
                 dtype=object)


def strings(shape: tuple[int, ...]) -> np.ndarray:
    return rng.choice(WORDS, size=shape).astype(object)


def run_strings(op_type: str, feed: dict[str, np.ndarray], n_out: int = 1, opset: int = 21,
                **attrs: Any) -> list[np.ndarray]:
    """Both runtimes on one node; string outputs compared exactly, numeric ones with assert_close."""
    outs = [f"y{i}" for i in range(n_out)]
    model = make_model([helper.make_node(op_type, list(feed), outs, **attrs)], feed, outs, opset)
    ours, ref = run_both(model, feed)
    for a, b in zip(ours, ref):
        if b.dtype == object:
            assert a.dtype == object and a.shape == b.shape and a.tolist() == b.tolist()
        else:
            assert_close([a], [b])
    return ours


@pytest.mark.parametrize("action, sensitive, stopwords, locale", [
    ("UPPER", 0, ["monday", "a b"], ""),
    ("LOWER", 1, ["Monday"], "C.UTF-8"),
    ("NONE", 0, [], ""),
    ("UPPER", 1, ["été"], "C"),
])
@pytest.mark.parametrize("shape", [(12,), (1, 12)])
def test_string_normalizer(action: str, sensitive: int, stopwords: list[str], locale: str,
                           shape: tuple[int, ...]) -> None:
    attrs: dict[str, Any] = {"case_change_action": action, "is_case_sensitive": sensitive, "locale": locale}
    if stopwords:
        attrs["stopwords"] = stopwords
    run_strings("StringNormalizer", {"x": strings(shape)}, **attrs)


def test_string_normalizer_all_dropped() -> None:
    x = np.array([["monday", "MONDAY"]], dtype=object)
    out = run_strings("StringNormalizer", {"x": x}, stopwords=["Monday"], locale="")
    assert out[0].shape == (1, 1)


@pytest.mark.parametrize("a, b", [((3, 4), (3, 4)), ((3, 1), (1, 5)), ((), (2,))])
def test_string_concat(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    run_strings("StringConcat", {"x": strings(a), "z": strings(b)})


@pytest.mark.parametrize("attrs", [{}, {"delimiter": " "}, {"delimiter": "a", "maxsplit": 1}, {"maxsplit": 1}])
def test_string_split(attrs: dict[str, Any]) -> None:
    """Without a delimiter we split on any whitespace run as the spec says; onnxruntime splits
    on spaces only, so tabs are left out of the comparison."""
    x = np.vectorize(lambda s: s.replace("\t", " "), otypes=[object])(strings((3, 4)))
    run_strings("StringSplit", {"x": x}, n_out=2, **attrs)


@pytest.mark.parametrize("pattern", [r"[A-Z].*", r"\w+", r"(mon|tues)day", r"[^@]+@[a-z]+\.com",
                                     r"[[:alpha:] ]+", r"[[:alnum:][:punct:]]+"])
def test_regex_full_match(pattern: str) -> None:
    x = np.concatenate([strings((8,)), np.array(["abc@site.com", "x@y.org"], dtype=object)])
    run_strings("RegexFullMatch", {"x": x}, pattern=pattern)


def _pool(kind: str) -> tuple[dict[str, Any], np.ndarray]:
    """A pool of 5 unigrams, 6 bigrams and 3 trigrams over tokens 0..7 (or their names), and a feed."""
    tokens = np.arange(8)
    uni = rng.choice(tokens, 5, replace=False)
    bi = np.unique(rng.choice(tokens, (10, 2)), axis=0)[:6]
    tri = np.unique(rng.choice(tokens, (6, 3)), axis=0)[:3]
    pool = np.concatenate([uni, bi.reshape(-1), tri.reshape(-1)])
    counts = [0, len(uni), len(uni) + bi.size]
    n_grams = len(uni) + len(bi) + len(tri)
    x = rng.choice(tokens, (4, 30))
    attrs: dict[str, Any] = {"ngram_counts": counts, "ngram_indexes": rng.permutation(n_grams).tolist()}
    if kind == "string":
        names = np.array([f"w{t}" for t in range(8)], dtype=object)
        attrs["pool_strings"] = names[pool].tolist()
        return attrs, names[x]
    attrs["pool_int64s"] = pool.tolist()
    return attrs, x.astype(np.int32 if kind == "int32" else np.int64)


@pytest.mark.parametrize("kind", ["int64", "int32", "string"])
@pytest.mark.parametrize("mode, lengths, skip", [("TF", (1, 3), 2), ("IDF", (2, 2), 0), ("TFIDF", (1, 2), 4)])
@pytest.mark.parametrize("weighted", [False, True])
def test_tfidf_vectorizer(kind: str, mode: str, lengths: tuple[int, int], skip: int, weighted: bool) -> None:
    attrs, x = _pool(kind)
    if weighted:
        attrs["weights"] = rng.random(len(attrs["ngram_indexes"])).astype(np.float32).tolist()
    feed = {"x": x}
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], mode=mode, min_gram_length=lengths[0],
                            max_gram_length=lengths[1], max_skip_count=skip, **attrs)
    ours, ref = run_both(make_model([node], feed, ["y"]), feed)
    assert_close(ours, ref)
    feed = {"x": x[0]}
    ours, ref = run_both(make_model([node], feed, ["y"]), feed)
    assert_close(ours, ref)


def test_tfidf_bad_mode_names_node() -> None:
    node = helper.make_node("TfIdfVectorizer", ["x"], ["y"], name="vec", mode="BM25", min_gram_length=1,
                            max_gram_length=1, max_skip_count=0, ngram_counts=[0], ngram_indexes=[0],
                            pool_int64s=[1])
    data = make_model([node], {"x": np.ones(3, np.int64)}, ["y"]).SerializeToString()
    with pytest.raises(webinfer.WebinferError, match=r"TfIdfVectorizer node 'vec'.*mode must be TF, IDF or TFIDF"):
        webinfer.InferenceSession(data)


def test_string_normalizer_bad_shape_names_node() -> None:
    node = helper.make_node("StringNormalizer", ["x"], ["y"], name="norm")
    data = make_model([node], {"x": strings((2, 3))}, ["y"]).SerializeToString()
    with pytest.raises(webinfer.ShapeInferenceError, match=r"StringNormalizer node 'norm'.*\[C\] or \[1, C\].*\[2,3\]"):
        webinfer.InferenceSession(data)
