#!/usr/bin/env bash
# Build .whl/, what a lent GPU machine needs beside its own torch (device README: no network there, Python 3.12,
# no Hydra/PyAV/diffusers/ZeroMQ/redis-server). Run here, once per checkout, from the repo root:
#
#   bash benchmarks/device_wheels.sh          # .whl/: our pinned wheels + Debian's redis-server in .whl/redis-bin
#   TESTS=1 bash benchmarks/device_wheels.sh  # and pytest, for `pytest -m gpu` on the device
#
# Then carry ".whl" in the device call and start the command as benchmarks/quality_device.sh or
# benchmarks/wan_afd_run.sh do (pip install --target /tmp/site .whl/*.whl; PATH gets .whl/redis-bin).
# Versions come from constraints.txt, so the device runs what the tests here ran.
set -euo pipefail
dest=${1:-.whl}
mkdir -p "$dest"
names=(hydra-core omegaconf av tenacity pyzmq redis hiredis msgpack diffusers peft python-multipart prometheus_client
       starlette uvicorn PyJWT httpx httpcore h11 anyio xxhash)
# TESTS=1: also pytest, to run the CUDA-only tests there (-m gpu). The whole call carries at most 64 MiB: the tracked
# tree is ~14 MiB and these wheels ~48 MiB (PyAV alone 34), so add nothing else to a call that carries .whl.
[ "${TESTS:-0}" = 1 ] && names+=(pytest pytest-timeout pluggy iniconfig)
pins=()
for n in "${names[@]}"; do
  pin=$(grep -i -E "^${n//-/[-_]}==" constraints.txt) || { echo "no pin for $n in constraints.txt" >&2; exit 1; }
  pins+=("$pin")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_26_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d "$dest" "${pins[@]}"
python3 -m pip wheel -q --no-deps -w "$dest" "$(grep -i '^antlr4-python3-runtime==' constraints.txt)"  # sdist only
# redis-server: the binary and its libraries a CUDA image lacks (jemalloc, lzf, atomic), for it alone
bin=$(command -v redis-server) || { echo "redis-server not installed here (make setup installs it)" >&2; exit 1; }
mkdir -p "$dest/redis-bin/lib"
cp "$(readlink -f "$bin")" "$dest/redis-bin/redis-server.bin"
for lib in libjemalloc.so.2 liblzf.so.1 libatomic.so.1; do
  path=$(ldd "$bin" | awk -v l="$lib" '$1 == l {print $3}')
  [ -n "$path" ] && cp "$path" "$dest/redis-bin/lib/"
done
cat > "$dest/redis-bin/redis-server" <<'SH'
#!/bin/sh
# Debian's redis-server for a machine without one; its rarer libraries beside it, for it alone
d=$(dirname "$(readlink -f "$0")")
LD_LIBRARY_PATH="$d/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" exec "$d/redis-server.bin" "$@"
SH
chmod +x "$dest/redis-bin/redis-server"
du -sh "$dest"
