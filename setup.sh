#!/usr/bin/env bash
# dataforge setup: installs the locked environment, nothing else.
#   .venv/              dataforge (editable), the first-party plugins (editable), everything they use and
#                       the test tools: exactly uv.lock
#   .venv-labelstudio/  the Label Studio server, kept apart (it pins Django and its own SDK): exactly
#                       envs/labelstudio/uv.lock, plus a migrated template database
#   chromium            Debian's, for the browser checks (when run as root or with passwordless sudo)
# The three are installed side by side. Each venv keeps a stamp of the files it was made from: a run
# rebuilds only the venv whose files changed, and with nothing changed it returns at once.
#
# Usage: ./setup.sh              install the lock (PYTHON=python3.12 ./setup.sh picks the interpreter)
#        ./setup.sh --upgrade    re-resolve both locks to the newest allowed versions, then install them;
#                                review and commit the changed uv.lock files like any other change
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
upgrade=0
case "${1:-}" in
  "") ;;
  --upgrade) upgrade=1 ;;
  *) echo "usage: ./setup.sh [--upgrade]" >&2; exit 2 ;;
esac
export UV_PYTHON_DOWNLOADS=never UV_NO_PROGRESS=1
step() { printf '==> %s\n' "$*"; }

hash_of() { cat setup.sh "$@" | sha256sum | cut -c1-16; }
venv_hash() { hash_of pyproject.toml uv.lock plugins/*/pyproject.toml; }
ls_hash() { hash_of envs/labelstudio/pyproject.toml envs/labelstudio/uv.lock; }
current() { [ "$(cat "$1/.setup-stamp" 2>/dev/null)" = "$2" ]; }
venv_current() { current .venv "$(venv_hash)" && .venv/bin/dataforge --version >/dev/null 2>&1; }
ls_current() { current .venv-labelstudio "$(ls_hash)" && [ -x .venv-labelstudio/bin/label-studio ]; }
if [ $upgrade = 0 ] && venv_current && ls_current; then
  echo "the environment is up to date: nothing to do"
  exit 0
fi
start=$SECONDS

# --- uv, at the version uv.lock pins, checked against the lock's hashes ------------------------------
locked_uv() {  # prints "uv==VERSION --hash=sha256:... ..." from uv.lock
  "$PY" - <<'EOF'
import tomllib
lock = tomllib.load(open("uv.lock", "rb"))
(uv,) = [p for p in lock["package"] if p["name"] == "uv"]
print(f"uv=={uv['version']}", *(f"--hash={w['hash']}" for w in uv["wheels"]))
EOF
}
uv_req=$(locked_uv)
uv_version=${uv_req%% *}
UV=.venv/bin/uv
if [ "$($UV --version 2>/dev/null | cut -d' ' -f2)" != "${uv_version#uv==}" ]; then
  boot=$(mktemp -d)
  trap 'rm -rf "$boot"' EXIT
  step "fetching $uv_version to install the lock with"
  echo "$uv_req" > "$boot/requirements.txt"
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$PY" -m pip install -q --no-deps --require-hashes --target "$boot" \
    -r "$boot/requirements.txt" 2> >(grep -v -e "is ignored: it is neither a file" -e "Running pip as the 'root'" >&2)
  UV=$boot/bin/uv
fi

if [ $upgrade = 1 ]; then
  step "re-resolving uv.lock and envs/labelstudio/uv.lock"
  $UV lock --upgrade --python "$PY"
  $UV lock --upgrade --python "$PY" --project envs/labelstudio
fi

# --- chromium (apt) in the background: it needs no Python and downloads from another registry ---------
chromium_log=$(mktemp)
chromium_pid=
if ! command -v chromium >/dev/null 2>&1; then
  sudo=
  [ "$(id -u)" = 0 ] || { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && sudo="sudo"; }
  if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
    step "installing Debian's chromium (apt-get, in the background)"
    ( $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends chromium ) >"$chromium_log" 2>&1 &
    chromium_pid=$!
  else
    echo "note: chromium is not installed and this user cannot install it (apt-get install chromium);"
    echo "      the browser tests will be skipped with that reason (see dataforge doctor)"
  fi
fi

# --- .venv-labelstudio, in the background: its own lock, then a migrated empty database -------------
# Servers started from a copy of the template database are up in seconds, not a minute.
ls_log=$(mktemp)
ls_pid=
ls_current || {
(
  rm -f .venv-labelstudio/.setup-stamp
  UV_PROJECT_ENVIRONMENT="$PWD/.venv-labelstudio" $UV sync -q --locked --python "$PY" --project envs/labelstudio
  tmpl=.venv-labelstudio/template
  rm -rf "$tmpl"; mkdir -p "$tmpl"
  env -i PATH=/usr/bin:/bin HOME="$PWD/$tmpl" LANG=C.UTF-8 LABEL_STUDIO_BASE_DATA_DIR="$PWD/$tmpl" \
    DJANGO_DB=sqlite LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false SENTRY_DSN= FRONTEND_SENTRY_DSN= \
    .venv-labelstudio/bin/label-studio version >/dev/null
  test -f "$tmpl/label_studio.sqlite3"
  ls_hash > .venv-labelstudio/.setup-stamp
) >"$ls_log" 2>&1 &
ls_pid=$!
}

# --- .venv: exactly uv.lock --------------------------------------------------------------------------
if ! venv_current; then
  step "installing uv.lock into .venv (dataforge, plugins, torch, fiftyone, dask, label-studio-sdk, test tools)"
  rm -f .venv/.setup-stamp
  $UV sync -q --locked --all-extras --all-groups --python "$PY"
  .venv/bin/dataforge --version >/dev/null
  # bytecode for the modules dataforge imports (a quarter of site-packages), written once now:
  # otherwise every process of a test run under PYTHONDONTWRITEBYTECODE compiles them again
  .venv/bin/python envs/compile_imported.py >/dev/null
  venv_hash > .venv/.setup-stamp
fi

fail=0
if [ -n "$ls_pid" ]; then
  step "waiting for .venv-labelstudio"
  if ! wait "$ls_pid"; then
    echo "error: setting up .venv-labelstudio failed:" >&2; tail -n 30 "$ls_log" >&2; fail=1
  fi
fi
if [ -n "$chromium_pid" ]; then
  step "waiting for chromium"
  if ! wait "$chromium_pid"; then
    echo "warning: installing chromium failed (the browser tests will say so):" >&2; tail -n 10 "$chromium_log" >&2
  fi
fi
rm -f "$ls_log" "$chromium_log"
[ $fail = 0 ] || exit 1
step "done in $((SECONDS - start)) s"
echo "activate with:  source .venv/bin/activate     then try:  dataforge doctor"
