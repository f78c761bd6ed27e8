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
- answers every S3 error with a body of its own, so that S3's error documents,
  which can quote the signature, never reach the client: any 4xx (403 for an
  expired or tampered URL, 404, 400 for a bad token or argument) becomes a
  plain 404; 412 and 416 keep their status, with an empty body (and, for a 416,
  S3's ``Content-Range``), since they answer the client's own preconditions
  and Range; any 5xx becomes a 502;
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


# S3's answers that keep their status (with an empty body): they answer the
# client's own conditional request and Range. Every other 4xx becomes a 404.
KEPT_ERRORS = (412, 416)
# nginx refuses 499 in error_page: it is its own code for a client that left.
MISSING_ERRORS = tuple(code for code in range(400, 499) if code not in KEPT_ERRORS)
FAILED_ERRORS = tuple(range(500, 600))


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
        "        # nginx intercepts only the codes listed: every 4xx and 5xx, but 499,",
        "        # which error_page refuses (nginx's own code for a client that left).",
        "        proxy_intercept_errors on;",
        *_error_page(MISSING_ERRORS, "@xaccel_s3_missing"),
        *(f"        error_page {code} = @xaccel_s3_{code};" for code in KEPT_ERRORS),
        *_error_page(FAILED_ERRORS, "@xaccel_s3_failed"),
        "        # The app's headers win over S3's; S3's own x-amz-* stay here.",
        "        proxy_headers_hash_bucket_size 128;",
        *(f"        proxy_hide_header {name};" for name in APP_OWNED),
        *(f"        proxy_hide_header {name};" for name in S3_SYSTEM_HEADERS),
        *(f"        add_header {name} {_app_variable(name)} always;" for name in DROPPED_BY_NGINX),
        "    }",
        "    location @xaccel_s3_missing {",
        "        return 404;",
        "    }",
        "    # The client's own precondition failed, or its Range fits nothing: an",
        "    # empty body, and for a 416 the object's size from S3's Content-Range.",
        '    # (return 412 "" would send nginx\'s HTML page; an empty variable does not.)',
        "    location @xaccel_s3_412 {",
        '        default_type "";',
        '        set $xaccel_empty "";',
        "        return 412 $xaccel_empty;",
        "    }",
        "    location @xaccel_s3_416 {",
        '        default_type "";',
        '        set $xaccel_empty "";',
        "        add_header Content-Range $upstream_http_content_range always;",
        "        return 416 $xaccel_empty;",
        "    }",
        "    location @xaccel_s3_failed {",
        "        return 502;",
        "    }",
        "",
    ]
    return lines


def _error_page(codes: tuple[int, ...], target: str, per_line: int = 20) -> list[str]:
    """One ``error_page`` over several lines (nginx reads a newline as a space)."""
    rows = [" ".join(str(c) for c in codes[i : i + per_line]) for i in range(0, len(codes), per_line)]
    lines = [f"        error_page {rows[0]}"] + [f"            {row}" for row in rows[1:]]
    lines[-1] += f" = {target};"
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
        "\t\t# 412 and 416 answer the client's own preconditions and Range: the",
        "\t\t# status stays, with an empty body (and S3's Content-Range, which gives",
        "\t\t# the size). Any other 4xx is a 404. The first match wins.",
        "\t\t@xaccel_s3_range {",
        "\t\t\tstatus 416",
        "\t\t\theader Content-Range *",
        "\t\t}",
        "\t\thandle_response @xaccel_s3_range {",
        "\t\t\theader Content-Range {rp.header.Content-Range}",
        "\t\t\trespond 416",
        "\t\t}",
        *(
            line
            for code in KEPT_ERRORS
            for line in (
                f"\t\t@xaccel_s3_{code} status {code}",
                f"\t\thandle_response @xaccel_s3_{code} {{",
                f"\t\t\trespond {code}",
                "\t\t}",
            )
        ),
        "\t\t@xaccel_s3_missing status 4xx",
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
