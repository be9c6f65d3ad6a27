"""Do the generated modules' URLs resolve? Every URL in modelUrls.ts / model_urls.py fetched with
HEAD (HTTP 200 after redirects), the token sent only where the Hub's rules allow it."""

from __future__ import annotations

import re
from pathlib import Path

from export.errors import ExportError
from export.release.hubnames import sends_token

URL_RE = re.compile(r"""https?://[^\s'"]+""")


def urls_in(path: str | Path) -> list[str]:
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not a text file"
        raise ExportError(
            f"{path}: cannot read it ({reason}); pass the generated modelUrls.ts or model_urls.py"
        ) from None
    urls = sorted(set(URL_RE.findall(text)))
    if not urls:
        raise ExportError(f"{path}: holds no URL; pass the generated modelUrls.ts or model_urls.py")
    return urls


def check_urls(paths: list[Path]) -> list[tuple[str, str]]:
    """Every URL in the given generated modules must resolve (HTTP 200 after redirects).
    Returns (url, problem) pairs; empty means all resolve."""
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import constants
    from huggingface_hub.utils import build_hf_headers, http_backoff

    # retried: what can pass (timeouts, a dropped connection, 429/5xx); not a refused or unresolvable
    # host (ConnectError), which would only make the user wait ~23 s for the same answer
    transient = (httpx2.TimeoutException, httpx2.ReadError, httpx2.WriteError, httpx2.RemoteProtocolError)

    problems = []
    urls = sorted({u for p in paths for u in urls_in(p)})
    if not urls:
        raise ExportError(f"no URLs found in {', '.join(map(str, paths))}")
    for url in urls:
        try:
            token = None if sends_token(url, constants.ENDPOINT) else False  # None: the saved token
            r = http_backoff(
                "HEAD",
                url,
                headers=build_hf_headers(token=token),
                follow_redirects=True,
                retry_on_exceptions=transient,
            )
            status = r.status_code
        except Exception as e:  # any transport failure means "does not resolve"; reported, not hidden
            problems.append((url, f"{type(e).__name__}: {e}"))
            continue
        print(f"  {status}  {url}")
        if status != 200:
            problems.append((url, f"HTTP {status}"))
    return problems


def command(args) -> int:
    """`rne-export check-urls`: exit 4 when any URL does not resolve."""
    import sys

    problems = check_urls(args.modules)
    for url, why in problems:
        print(f"error: {url} does not resolve: {why}", file=sys.stderr)
    if problems:
        return 4
    print("all URLs resolve")
    return 0
