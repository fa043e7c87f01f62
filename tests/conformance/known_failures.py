"""Every onnx backend-suite case webinfer's cpu provider is known to fail, with the reason.

Keys are regular expressions matched against test names (as BackendTest's
xfail does); a case listed here that starts passing shows up as an
unexpected success, so the list cannot silently go stale.
"""

KNOWN_FAILURES: dict[str, str] = {
}
