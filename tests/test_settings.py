"""Settings: every variable validated once, a bad value named in a ConfigError."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from xaccel_middleware import ConfigError, Settings, XAccelMiddleware, XAccelWSGIMiddleware
from xaccel_middleware.settings import VARIABLES, Root

BAD = [
    ("XACCEL_MODE", "fast"),
    ("XACCEL_MODE", "autoo"),
    ("XACCEL_ROOTS", "/no/such/dir=/p"),
    ("XACCEL_ROOTS", "relative=/p"),
    ("XACCEL_ROOTS", "{tmp}"),
    ("XACCEL_ROOTS", "{tmp}=nope"),
    ("XACCEL_ROOTS", "{tmp}="),
    ("XACCEL_ROOTS", "/=/_files"),  # every path on the machine would be inside
    ("XACCEL_ROOTS", "{tmp}/../../../../../../../../..=/_files"),
    ("XACCEL_TRUSTED_PROXIES", "10.0.0.0/33"),
    ("XACCEL_TRUSTED_PROXIES", "localhost"),
    ("XACCEL_TRUSTED_PROXIES", "10.0.0.1,garbage"),
    ("XACCEL_PROXY_SECRET", "short"),
    ("XACCEL_PROXY_SECRET", "sécret-sécret-sécret"),
    ("XACCEL_PROXY_SECRET", "with\x01control-characters"),
    # nginx's include would expand "$", end the string at '"' and unescape "\".
    ("XACCEL_PROXY_SECRET", "with$dollar-0123456789"),
    ("XACCEL_PROXY_SECRET", 'with"quote-0123456789'),
    ("XACCEL_PROXY_SECRET", "back\\slash-0123456789"),
    ("XACCEL_PROXY_SECRET", "with space-0123456789"),
    ("XACCEL_PROXY_SECRET", "{{braces}}-0123456789"),  # doubled for str.format
    ("XACCEL_OFFLOAD_HEADER", "X-Lighttpd-Send-File"),
    ("XACCEL_MAX_RANGES", "0"),
    ("XACCEL_MAX_RANGES", "-1"),
    ("XACCEL_MAX_RANGES", "ten"),
    ("XACCEL_MAX_RANGES", "1.5"),
    ("XACCEL_MAX_RANGES", "١٢"),  # Arabic-Indic digits
    ("XACCEL_MAX_RANGES", "9" * 5000),  # past int()'s own digit limit
    ("XACCEL_MAX_RANGES", "10001"),  # a cap that large caps nothing
    ("XACCEL_BUFFERING", "maybe"),
    ("XACCEL_LIMIT_RATE", "-5"),
    ("XACCEL_LIMIT_RATE", "1m"),
    ("XACCEL_EXPIRES", "tomorrow"),
    ("XACCEL_EXPIRES", "-1"),
    ("XACCEL_CHUNK_SIZE", "100"),
    ("XACCEL_CHUNK_SIZE", str(1 << 40)),
    ("XACCEL_S3_ENDPOINT_URL", "ftp://host"),
    ("XACCEL_S3_ENDPOINT_URL", "http://host/path"),
    ("XACCEL_S3_ENDPOINT_URL", "host:9000"),
    # Written into nginx's `server` line and Caddy's reverse_proxy: no syntax may pass.
    ("XACCEL_S3_ENDPOINT_URL", "http://x;}}include$evil{{y:9000"),  # doubled for str.format
    ("XACCEL_S3_ENDPOINT_URL", "http://x y:9000"),
    ("XACCEL_S3_ENDPOINT_URL", "http://user:password@host:9000"),
    ("XACCEL_S3_ENDPOINT_URL", "http://host:0"),
    ("XACCEL_S3_ENDPOINT_URL", "http://host:65536"),
    ("XACCEL_S3_ENDPOINT_URL", "http://host:port"),
    ("XACCEL_S3_ENDPOINT_URL", "http://host?x=1"),
    ("XACCEL_S3_ENDPOINT_URL", "http://host#x"),
    ("XACCEL_S3_ENDPOINT_URL", "http://-host-"),
    ("XACCEL_S3_ENDPOINT_URL", "http://host..example"),
    ("XACCEL_S3_ENDPOINT_URL", "http://under_score"),
    ("XACCEL_S3_ENDPOINT_URL", "http://1.2.3.999:9000"),
    ("XACCEL_S3_ENDPOINT_URL", "http://::1:9000"),
    ("XACCEL_S3_ENDPOINT_URL", "http://[::1"),
    ("XACCEL_S3_ENDPOINT_URL", "http://[127.0.0.1]:9000"),
    ("XACCEL_S3_ENDPOINT_URL", "http://[fe80::1%25eth0]:9000"),
    ("XACCEL_S3_REGION", "US East"),
    ("XACCEL_S3_BUCKETS", "Upper"),
    ("XACCEL_S3_BUCKETS", "ok-bucket,x"),
    ("XACCEL_S3_URL_LIFETIME", "0"),
    ("XACCEL_S3_URL_LIFETIME", str(8 * 24 * 3600)),  # SigV4 allows seven days at most
    ("XACCEL_S3_CONNECT_TIMEOUT", "0"),
    ("XACCEL_S3_CONNECT_TIMEOUT", "nan"),
    ("XACCEL_S3_READ_TIMEOUT", "inf"),
    ("XACCEL_S3_READ_TIMEOUT", "soon"),
]


@pytest.mark.parametrize(("variable", "value"), BAD, ids=[f"{v}={x[:30]!r}" for v, x in BAD])
def test_bad_value_names_the_variable(variable: str, value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=variable) as info:
        Settings.from_env({variable: value.format(tmp=tmp_path)})
    assert isinstance(info.value, ValueError)
    assert "invalid" in str(info.value)
    if variable == "XACCEL_PROXY_SECRET":
        assert value not in str(info.value)  # a secret is never echoed


def test_every_variable_has_a_bad_value_in_the_table() -> None:
    assert set(VARIABLES.values()) == {variable for variable, _ in BAD}


@pytest.mark.parametrize("variable", sorted(VARIABLES.values()))
def test_bad_value_fails_when_the_middleware_is_built(variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(variable, dict(BAD)[variable].format(tmp="/nonexistent"))
    with pytest.raises(ConfigError, match=variable):
        XAccelMiddleware(lambda scope, receive, send: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ConfigError, match=variable):
        XAccelWSGIMiddleware(lambda environ, start_response: [])


def test_keyword_arguments_are_validated_like_variables() -> None:
    with pytest.raises(ConfigError, match="XACCEL_MODE"):
        Settings(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="XACCEL_S3_BUCKETS"):
        Settings(s3_buckets=5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="XACCEL_ROOTS"):
        Settings(roots=42)  # type: ignore[arg-type]


def test_defaults_from_an_empty_environment() -> None:
    settings = Settings.from_env({})
    assert settings == Settings()
    assert settings.mode == "auto"
    assert settings.roots == ()
    assert settings.trusted_proxies == ()
    assert settings.proxy_secret is None
    assert settings.offload_header == "X-Accel-Redirect"
    assert settings.max_ranges == 100
    assert settings.accel_buffering is None
    assert settings.accel_limit_rate is None
    assert settings.accel_expires is None
    assert settings.s3_buckets == frozenset()


def test_blank_variables_count_as_unset() -> None:
    assert Settings.from_env({"XACCEL_MODE": "  ", "XACCEL_ROOTS": ""}) == Settings()


def test_good_values_are_parsed(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "XACCEL_MODE": " Offload ",
            "XACCEL_ROOTS": f"{tmp_path}=/protected/",
            "XACCEL_TRUSTED_PROXIES": "10.0.0.0/8, ::1",
            "XACCEL_PROXY_SECRET": "0123456789abcdef\n",  # a trailing newline, as files have
            "XACCEL_OFFLOAD_HEADER": "x-sendfile",
            "XACCEL_MAX_RANGES": "20",
            "XACCEL_BUFFERING": "no",
            "XACCEL_LIMIT_RATE": "0",
            "XACCEL_EXPIRES": "@3600",
            "XACCEL_CHUNK_SIZE": "65536",
            "XACCEL_S3_ENDPOINT_URL": "http://127.0.0.1:9000/",
            "XACCEL_S3_REGION": "eu-west-1",
            "XACCEL_S3_BUCKETS": "media,course-assets",
            "XACCEL_S3_URL_LIFETIME": "300",
            "XACCEL_S3_CONNECT_TIMEOUT": "1.5",
            "XACCEL_S3_READ_TIMEOUT": "10",
        }
    )
    assert settings.mode == "offload"
    assert settings.roots == (Root(str(tmp_path.resolve()), "/protected"),)
    assert settings.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert settings.proxy_secret == "0123456789abcdef"
    assert settings.offload_header == "X-Sendfile"
    assert (settings.max_ranges, settings.accel_buffering, settings.accel_limit_rate) == (20, False, 0)
    assert (settings.accel_expires, settings.chunk_size) == ("@3600", 65536)
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.s3_buckets == frozenset({"media", "course-assets"})
    assert (settings.s3_url_lifetime, settings.s3_connect_timeout, settings.s3_read_timeout) == (
        300,
        1.5,
        10.0,
    )


@pytest.mark.parametrize(
    ("given", "effective"),
    [
        # botocore signs the Host as written, the proxy configuration as
        # urlsplit().hostname lowers it: both must get the one spelling.
        ("http://MinIO:9000", "http://minio:9000"),
        ("HTTPS://S3.EU-West-1.AmazonAWS.com/", "https://s3.eu-west-1.amazonaws.com"),
        ("http://[::1]:9000", "http://[::1]:9000"),
        ("http://[FE80::AB]:9000", "http://[fe80::ab]:9000"),
        ("http://127.0.0.1:09000", "http://127.0.0.1:9000"),
        ("https://minio.example.org:443", "https://minio.example.org:443"),
        ("http://s3-1.internal.example:65535", "http://s3-1.internal.example:65535"),
    ],
)
def test_the_endpoint_is_normalised(given: str, effective: str) -> None:
    assert Settings(s3_endpoint_url=given).s3_endpoint_url == effective


def test_a_link_to_the_file_systems_root_is_refused(tmp_path: Path) -> None:
    (tmp_path / "all").symlink_to("/")
    with pytest.raises(ConfigError, match=r"XACCEL_ROOTS directory .* root"):
        Settings(roots=f"{tmp_path / 'all'}=/_files")


def test_secret_alphabet_and_range_cap_limits_are_accepted() -> None:
    secret = "Az09-._~+/=" + "x" * 5
    assert Settings(proxy_secret=secret, max_ranges=10_000).proxy_secret == secret


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.mode = "offload"  # type: ignore[misc]


def test_replace_validates_again() -> None:
    settings = Settings(mode="stream")
    assert dataclasses.replace(settings, max_ranges="5").max_ranges == 5  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="XACCEL_MAX_RANGES"):
        dataclasses.replace(settings, max_ranges=0)


def test_describe_masks_the_secret(tmp_path: Path) -> None:
    settings = Settings(proxy_secret="0123456789abcdef", roots={str(tmp_path): "/p"})
    rows = dict(settings.describe())
    assert set(rows) == set(VARIABLES.values())
    assert rows["XACCEL_PROXY_SECRET"] == "(set)"
    assert "0123456789abcdef" not in str(rows)
    assert rows["XACCEL_ROOTS"] == f"{tmp_path.resolve()}=/p"
    assert rows["XACCEL_MODE"] == "auto"
    assert dict(Settings().describe())["XACCEL_PROXY_SECRET"] == "(unset)"
