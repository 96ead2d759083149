#!/usr/bin/env bash
# Runs every check and test of the workspace on a fresh machine. Installs the
# independent test oracles first (idempotent): libvhdi (vhdiinfo + pyvhdi),
# dissect.hypervisor, qemu-utils and pywbem (the WBEM client driving `refpoint serve`). Usage: bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

command -v qemu-img >/dev/null && command -v qemu-io >/dev/null || apt_install qemu-utils
command -v vhdiinfo >/dev/null || apt_install libvhdi-utils
python3 -c 'import pyvhdi' 2>/dev/null || python3 -m pip install -q libvhdi-python
python3 -c 'import dissect.hypervisor' 2>/dev/null || python3 -m pip install -q dissect.hypervisor
python3 -c 'import pywbem' 2>/dev/null || python3 -m pip install -q pywbem

echo "== oracles: $(qemu-img --version | head -n1); libvhdi $(python3 -c 'import pyvhdi; print(pyvhdi.get_version())'); dissect.hypervisor $(python3 -c 'import importlib.metadata as m; print(m.version("dissect.hypervisor"))')"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
set +e
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole workspace (cargo prints one per test binary).
awk '/^test result:/ {p += $4; f += $6; i += $8} END {printf "%d passed, %d failed, %d skipped\n", p, f, i}' "$log"
rm -f "$log"
exit "$status"
