#!/usr/bin/env bash
# Build the image, start the compose deployment's replicas and load balancer, and hold one
# native WebSocket call through HAProxy (greeting heard, then bye). Needs a Docker engine,
# which the development machines do not have (docs/deploy.md, "What was validated here").
#
#   scripts/compose_smoke.sh            (from the checkout, after `make setup`)
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE_DIR=deploy/compose
PY=.venv/bin/python

if ! timeout 20 docker info >/dev/null 2>&1; then
    echo "no Docker engine answers here: nothing to build" >&2
    exit 2
fi
key_file="$COMPOSE_DIR/secrets/voxline_api_key"
[ -s "$key_file" ] || "$PY" -c "import secrets; print(secrets.token_hex(24))" >"$key_file"
export GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-smoke-test}"
compose() { timeout 1800 docker compose -f "$COMPOSE_DIR/compose.yaml" "$@"; }
trap 'compose down --timeout 60' EXIT
compose up -d --build voxline-1 voxline-2 lb

VOXLINE_KEY="$(head -n1 "$key_file")" timeout 300 "$PY" - <<'PY'
import asyncio, json, os, time

import httpx
import websockets

KEY = os.environ["VOXLINE_KEY"]


async def main() -> None:
    deadline = time.monotonic() + 240
    while True:  # both replicas load their models first
        try:
            if httpx.get("http://127.0.0.1:8000/health/ready").status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the load balancer never reported a ready replica")
        await asyncio.sleep(2)
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {KEY}"}
    async with websockets.connect("ws://127.0.0.1:8000/v1/stream", additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "hello", "sample_rate": 16000}))
        audio = 0
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                audio += len(message)
            elif json.loads(message)["type"] == "audio.end":
                break
        await ws.send(json.dumps({"type": "bye"}))
    print(f"greeting through HAProxy: {audio / 32000:.1f} s of audio, call {time.monotonic() - started:.1f} s")


asyncio.run(main())
PY
