# Sourced by scripts/serve and scripts/test: create .venv with the machine's python3 and install the project
# (extras given in $OPENCKPT_EXTRAS) when pyproject.toml or the constraints changed since the last install.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
stamp="$venv/.openckpt-install-${OPENCKPT_EXTRAS//,/-}"
want="$(cat "$root/pyproject.toml" "$root/scripts/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    if [[ ",$OPENCKPT_EXTRAS," =~ ,(all|torch|lightning), ]]; then
        # torch first, pinned to the CPU build on disk, so nothing resolves a CUDA build (serving needs no torch).
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            -c "$root/scripts/constraints.txt" "torch==2.13.0"
    fi
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$root/scripts/constraints.txt" -e "$root[$OPENCKPT_EXTRAS]"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
