"""Strings: StringNormalizer, StringConcat, StringSplit, RegexFullMatch, TfIdfVectorizer."""

from __future__ import annotations
