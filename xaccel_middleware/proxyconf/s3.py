"""The S3 part of the proxy configuration, written when ``XACCEL_S3_BUCKETS`` is set.

The app answers ``X-Accel-Redirect: /_xaccel_s3/`` with the presigned path and
query in ``X-Accel-S3-Uri`` (SigV4, path-style, valid for
``XACCEL_S3_URL_LIFETIME`` seconds, signed for HEAD when the request is a
HEAD). The proxy then:

- sends the request to the S3 endpoint pinned here, with the ``Host`` that was
  signed; only the path and query come from the app, so an app bug cannot send
  the proxy elsewhere. The URI is passed through untouched (nginx:
  ``proxy_pass`` with a variable; Caddy: ``rewrite`` to the placeholder), so
  keys that need percent-encoding reach the right object. Rebuilding the URL
  from regex captures would decode and re-encode them, and break the signature;
- clears the client's ``Authorization`` and ``Cookie``; passes ``Range`` and the
  conditional headers, which S3 answers itself;
- hides S3's ``x-amz-*`` headers. Caddy deletes them by prefix. nginx cannot
  match a prefix, so it hides S3's documented system headers; user metadata
  (``x-amz-meta-*``) would still pass, so keep no secrets in object metadata,
  or add ``proxy_hide_header`` lines for the names you use;
- keeps the app's Content-Type, Content-Disposition, Cache-Control and
  Expires, and drops S3's copies (object metadata). The middleware always
  names a Content-Type on an S3 offload: the app's, or one guessed from the key;
- turns an S3 refusal (403, which an expired or tampered URL gets, or 404) into
  a plain 404 and an S3 failure into a 502, so that S3's error documents,
  which can quote the signature, never reach the client;
- buffers S3's answer in memory without spooling it to disk: nginx spent about
  six times more CPU with ``proxy_buffering off``, and a temporary file per
  large download costs disk I/O for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..settings import Settings
from ..sources.s3 import S3_LOCATION, S3_URI_HEADER, endpoint_url
from .model import DROPPED_BY_NGINX, PARITY_HEADERS

# Debian's CA bundle, for nginx's check of S3's certificate.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# The app owns these: S3's copies (object metadata) are dropped.
APP_OWNED = ("Content-Type", "Content-Disposition", "Cache-Control", "Expires")
# S3's own response headers (nginx cannot hide by prefix). x-amzn-requestid is
# what some S3-compatible servers send instead of x-amz-request-id.
S3_SYSTEM_HEADERS = (
    "x-amz-request-id",
    "x-amz-id-2",
    "x-amzn-requestid",
    "x-amz-version-id",
    "x-amz-delete-marker",
    "x-amz-expiration",
    "x-amz-restore",
    "x-amz-storage-class",
    "x-amz-replication-status",
    "x-amz-website-redirect-location",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key-md5",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-checksum-type",
    "x-amz-mp-parts-count",
    "x-amz-tagging-count",
    "x-amz-missing-meta",
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
    "x-amz-request-charged",
    "x-amz-bucket-region",
)


@dataclass(frozen=True)
class S3Upstream:
    """The S3 endpoint the proxy sends presigned requests to."""

    scheme: str
    host: str
    port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Upstream | None:
        if not settings.s3_buckets:
            return None
        parts = urlsplit(endpoint_url(settings))
        scheme = parts.scheme
        return cls(scheme, parts.hostname or "", parts.port or (443 if scheme == "https" else 80))

    @property
    def host_header(self) -> str:
        """The Host the URL was signed for: SigV4 leaves out the scheme's default port."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host_header}"


def described(settings: Settings) -> tuple[tuple[str, str], ...]:
    """The S3 variables for the header comment."""
    shown = ("XACCEL_S3_ENDPOINT_URL", "XACCEL_S3_REGION", "XACCEL_S3_BUCKETS", "XACCEL_S3_URL_LIFETIME")
    return tuple((var, text) for var, text in settings.describe() if var in shown)


# --- nginx -----------------------------------------------------------------


def nginx_upstream(s3: S3Upstream) -> list[str]:
    """An ``upstream`` block, beside the server block: proxy_pass with a variable
    needs a named group (or a resolver) for a host name."""
    return [
        "# S3, pinned: presigned requests go here and nowhere else. nginx resolves",
        "# a name when it starts: reload it daily, since S3's addresses change.",
        "upstream xaccel_s3 {",
        f"    server {'[' + s3.host + ']' if ':' in s3.host else s3.host}:{s3.port};",
        "    keepalive 16;",
        "}",
        "",
    ]


def _app_variable(name: str) -> str:
    return "$xaccel_app_" + name.lower().replace("-", "_")


def nginx_location(s3: S3Upstream) -> list[str]:
    lines = [
        f"    # S3 objects: X-Accel-Redirect {S3_LOCATION} with the presigned path and query",
        f"    # in {S3_URI_HEADER}. Only those come from the app; the host is pinned above.",
        f"    location {S3_LOCATION} {{",
        "        internal;",
        "        # Read the app's answer before proxy_pass replaces it with S3's.",
        f"        set $xaccel_s3_uri $upstream_http_{S3_URI_HEADER.lower().replace('-', '_')};",
    ]
    for name in DROPPED_BY_NGINX:
        lines.append(f"        set {_app_variable(name)} $upstream_http_{name.lower().replace('-', '_')};")
    lines += [
        f"        proxy_pass {s3.scheme}://xaccel_s3$xaccel_s3_uri;",
        "        proxy_http_version 1.1;",
        '        proxy_set_header Connection "";',
        f"        proxy_set_header Host {s3.host_header};",
        "        # Neither the client's credentials nor a POST body are S3's business.",
        '        proxy_set_header Authorization "";',
        '        proxy_set_header Cookie "";',
        '        proxy_set_header X-Accel-Proxy-Secret "";',
        "        proxy_pass_request_body off;",
        '        proxy_set_header Content-Length "";',
        '        proxy_set_header Content-Type "";',
    ]
    if s3.scheme == "https":
        lines += [
            "        proxy_ssl_server_name on;",
            f"        proxy_ssl_name {s3.host};",
            "        proxy_ssl_verify on;",
            f"        proxy_ssl_trusted_certificate {CA_BUNDLE};",
        ]
    lines += [
        "        # Buffered in memory, never spooled to disk.",
        "        proxy_buffering on;",
        "        proxy_buffer_size 16k;",
        "        proxy_buffers 16 64k;",
        "        proxy_busy_buffers_size 128k;",
        "        proxy_max_temp_file_size 0;",
        "        # S3's error documents can quote the signature: answer with nginx's own.",
        "        proxy_intercept_errors on;",
        "        error_page 403 404 = @xaccel_s3_missing;",
        "        error_page 500 502 503 504 = @xaccel_s3_failed;",
        "        # The app's headers win over S3's; S3's own x-amz-* stay here.",
        "        proxy_headers_hash_bucket_size 128;",
        *(f"        proxy_hide_header {name};" for name in APP_OWNED),
        *(f"        proxy_hide_header {name};" for name in S3_SYSTEM_HEADERS),
        *(f"        add_header {name} {_app_variable(name)} always;" for name in DROPPED_BY_NGINX),
        "    }",
        "    location @xaccel_s3_missing {",
        "        return 404;",
        "    }",
        "    location @xaccel_s3_failed {",
        "        return 502;",
        "    }",
        "",
    ]
    return lines


# --- Caddy -----------------------------------------------------------------


def caddy_handle_response(s3: S3Upstream, indent: str, response: str) -> list[str]:
    """A ``handle_response`` for S3 offloads, to place before the one for files.

    ``response`` names the placeholder namespace: ``rp`` inside
    ``reverse_proxy``, ``resp`` inside ``intercept``, which keeps every app
    header, so there nothing is copied and the X-Accel-* ones go.
    """
    placeholder = "{" + response + ".header." + S3_URI_HEADER + "}"
    lines = [
        f"# S3 objects: the presigned path and query come from {S3_URI_HEADER};",
        "# the host is pinned here.",
        f"@xaccel_s3 header X-Accel-Redirect {S3_LOCATION}",
        "handle_response @xaccel_s3 {",
        "\t# A HEAD stays a HEAD, as signed; anything else becomes a GET.",
        "\t@xaccel_s3_not_head not method HEAD",
        "\tmethod @xaccel_s3_not_head GET",
        "\t# No body for S3 (a POST's went to the app): an unset variable is empty.",
        "\trequest_body {",
        "\t\tset {http.vars.xaccel_no_body}",
        "\t}",
        f"\trewrite * {placeholder}",
    ]
    if response == "rp":
        lines += [
            "\tcopy_response_headers {",
            *(f"\t\tinclude {name}" for name in PARITY_HEADERS),
            "\t}",
        ]
    else:
        lines += ["\theader -X-Accel-*"]
    lines += [
        f"\treverse_proxy {s3.url} {{",
        f"\t\theader_up Host {s3.host_header}",
        "\t\theader_up -Authorization",
        "\t\theader_up -Cookie",
        "\t\theader_up -X-Accel-Proxy-Secret",
        "\t\theader_down -X-Amz*",
        *(f"\t\theader_down -{name}" for name in APP_OWNED),
        *(["\t\theader_down -Content-Length"] if response == "resp" else []),
        "\t\t# S3's error documents can quote the signature: answer with Caddy's own.",
        "\t\t@xaccel_s3_missing status 403 404",
        "\t\thandle_response @xaccel_s3_missing {",
        "\t\t\trespond 404",
        "\t\t}",
        "\t\t@xaccel_s3_failed status 5xx",
        "\t\thandle_response @xaccel_s3_failed {",
        "\t\t\trespond 502",
        "\t\t}",
    ]
    if response == "resp":
        # The app's Content-Length (0) is in the answer already, and copying
        # adds S3's beside it: set S3's in its place (a deletion would wait
        # until the end and take both).
        lines += [
            "\t\t@xaccel_s3_body status 2xx",
            "\t\thandle_response @xaccel_s3_body {",
            "\t\t\theader Content-Length {rp.header.Content-Length}",
            "\t\t\tcopy_response",
            "\t\t}",
        ]
    lines += ["\t}", "}"]
    return [indent + line for line in lines]
