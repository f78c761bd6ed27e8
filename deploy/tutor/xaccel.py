"""Tutor plugin: Caddy sends the LMS's private files (xaccel-middleware).

Tutor's Caddyfile has no patch point inside the LMS's ``reverse_proxy``, so the
LMS site block gets an ``intercept`` (patch ``caddyfile-lms``): it takes the
LMS's ``X-Accel-Redirect`` answers and serves the file from the private media
folder, which Caddy mounts read-only. Caddy 2.8 or later (Tutor 22 runs 2.11).

Install (Tutor 17 or later)::

    cp xaccel.py "$(tutor plugins printroot)/"
    tutor plugins enable xaccel
    tutor config save
    tutor local restart caddy lms

``tutor config save`` writes ``env/local/docker-compose.prod.override.yml``:
Caddy's mount and secret, and the LMS's ``XACCEL_*`` variables. If you keep
your own file there, the plugin leaves it alone: copy :data:`COMPOSE_OVERRIDE`
into it. The LMS must run its WSGI application inside ``XAccelWSGIMiddleware``.
"""

from __future__ import annotations

import os
from typing import Any

from tutor import hooks

# `render_tutor` of xaccel-middleware for XACCEL_ROOTS=/openedx/media-private=/_protected
# with XACCEL_PROXY_SECRET set; the project's tests check it against the generator.
CADDYFILE_LMS = """\
# xaccel-middleware: Caddyfile lines for a site block that proxies to lms:8000
# with a reverse_proxy of its own (Tutor's LMS: the caddyfile-lms patch);
# `intercept` takes the app's answers.
# from these settings (the app must run with the same ones):
#   XACCEL_MODE=auto
#   XACCEL_ROOTS=/openedx/media-private=/_protected
#   XACCEL_TRUSTED_PROXIES=(none)
#   XACCEL_PROXY_SECRET=(set)

# Set on every request, replacing what the client sent.
# Caddy can scope a header to one upstream only inside its reverse_proxy,
# which Tutor's LMS one does not let a plugin edit: every reverse_proxy of
# this site receives the secret. Give any other one (a plugin's, in
# caddyfile-lms) the line `header_up -X-Accel-Proxy-Secret`.
request_header X-Sendfile-Type X-Accel-Redirect
request_header X-Accel-Proxy-Secret {env.XACCEL_PROXY_SECRET}

# Caddy has no `internal`: a client asking for a prefix directly gets 404.
@xaccel_internal path /_protected/*
respond @xaccel_internal 404

intercept {
	@xaccel_redirect header X-Accel-Redirect *
	handle_response @xaccel_redirect {
		# intercept keeps every app header, the X-Accel-* ones included.
		header -X-Accel-*
		# An offloaded POST is sent as a GET of the file.
		method GET
		rewrite * {resp.header.X-Accel-Redirect}
		handle_path /_protected/* {
			root * /openedx/media-private
			file_server
		}
		handle {
			respond 404
		}
	}
}
"""

OVERRIDE_MARK = "# Written by the xaccel Tutor plugin"
COMPOSE_OVERRIDE = f"""\
{OVERRIDE_MARK}: Caddy reads the LMS's private media.
services:
  caddy:
    environment:
      XACCEL_PROXY_SECRET: "{{secret}}"
    volumes:
      - ../../data/openedx-media-private:/openedx/media-private:ro
  lms:
    environment:
      XACCEL_ROOTS: "/openedx/media-private=/_protected"
      XACCEL_PROXY_SECRET: "{{secret}}"
"""

hooks.Filters.CONFIG_UNIQUE.add_item(("XACCEL_PROXY_SECRET", "{{ 32|random_string }}"))
hooks.Filters.ENV_PATCHES.add_item(("caddyfile-lms", CADDYFILE_LMS))


@hooks.Actions.ENV_SAVED.add()
def _write_compose_override(root_env: str, config: dict[str, Any]) -> None:
    path = os.path.join(root_env, "local", "docker-compose.prod.override.yml")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as existing:
            if not existing.read().startswith(OVERRIDE_MARK):
                return  # the operator's own file
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as out:
        out.write(COMPOSE_OVERRIDE.format(secret=config["XACCEL_PROXY_SECRET"]))
