"""Tests named after the vulnerabilities they prevent, run through both adapters."""

from __future__ import annotations

import pytest
from cases import CONTENT
from conftest import PREFIX, ExchangeFn, Media

from xaccel_middleware.decide import Decider, Offload, Refuse, Request


@pytest.mark.parametrize(
    "sent",
    [
        {"x-sendfile-type": "X-Accel-Redirect"},
        {"x-sendfile-type": "X-Sendfile"},
        {"x-sendfile-type": "X-Accel-Redirect", "x-accel-mapping": "/=/"},
        {"x-accel-mapping": "/=/internal/"},
    ],
)
def test_cve_2025_61780_rack_client_chosen_sendfile_mapping(
    exchange: ExchangeFn, media: Media, sent: dict[str, str]
) -> None:
    """Rack::Sendfile believed X-Sendfile-Type and X-Accel-Mapping from any
    client, which let one pick the header and rewrite the path it exposed."""
    headers = [("Content-Type", "text/plain"), ("X-Accel-Source", str(media.file))]
    untrusted = exchange(
        media.settings(trusted_proxies="10.0.0.0/8"), headers, request_headers=sent, client="192.0.2.9"
    )
    assert untrusted.status == 200
    assert untrusted.body == CONTENT
    assert "x-accel-redirect" not in untrusted.headers
    assert "x-sendfile" not in untrusted.headers
    assert str(media.root) not in str(untrusted.raw_headers)

    # Even from the trusted proxy, a mapping header moves nothing: the
    # location comes from XACCEL_ROOTS alone.
    trusted = exchange(
        media.settings(trusted_proxies="127.0.0.1/32"),
        headers,
        request_headers={"x-sendfile-type": "X-Accel-Redirect", "x-accel-mapping": f"{media.root}=/evil/"},
    )
    assert trusted.headers["x-accel-redirect"] == f"{PREFIX}/file.txt"
    assert trusted.body == b""


def test_ghsa_6r3c_8xf3_ggrr_django_sendfile2_path_outside_root(exchange: ExchangeFn, media: Media) -> None:
    """django-sendfile2 compared a path to SENDFILE_ROOT as a string prefix, so
    /x/media-private passed for a root of /x/media."""
    assert str(media.private).startswith(str(media.root))
    for path in (media.private, f"{media.root}/../media-private/secret.txt"):
        for settings in (media.settings(mode="offload"), media.settings(mode="stream")):
            result = exchange(settings, [("Content-Type", "text/plain"), ("X-Accel-Source", str(path))])
            assert result.status == 404
            assert b"secret" not in result.body
            assert "x-accel-redirect" not in result.headers


def test_ghsa_6r3c_8xf3_ggrr_file_handed_over_from_the_sibling_is_not_offloaded(media: Media) -> None:
    """A file the framework hands over (pathsend, file_wrapper) from the sibling
    is streamed as the app meant, never offloaded under the root's prefix."""
    decider = Decider(media.settings(mode="offload"))
    request = Request("GET", {}, "X-Accel-Redirect")
    outcome = decider.for_file(str(media.private), None, request, [])
    assert not isinstance(outcome, (Offload, Refuse))
    outcome.file.close()
