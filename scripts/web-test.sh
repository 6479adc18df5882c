#!/usr/bin/env bash
# The web client's checks (run by scripts/test.sh, so by CI; fails loudly, never skips):
#   1. Debian's Chromium (and an emoji font for readable screenshots) installed when missing;
#      no browser is ever downloaded by a test tool;
#   2. `npm ci` in web/ (exact versions from package-lock.json);
#   3. type check, then a fresh build that must equal the committed web/dist (the server embeds
#      web/dist, so sources and what ships cannot drift);
#   4. the unit tests of the client's state (node --test);
#   5. the browser tests: headless Chromium via playwright-core against target/debug/iris
#      (built here), screenshots in target/web-artifacts/; a failed run prints the server's log
#      and each page's console.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium)
[[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ]] || need_apt+=(fonts-noto-color-emoji)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

cargo build -q -p iris --bin iris

cd web
npm ci --no-audit --no-fund --loglevel=error
npm run --silent typecheck
npm run --silent build
if ! git diff --exit-code --stat -- dist || [[ -n "$(git status --porcelain -- dist)" ]]; then
  echo "web/dist differs from a fresh build of web/src: run 'npm run build' in web/ and commit web/dist" >&2
  exit 1
fi
npm run --silent test:unit
# A failed browser run prints what CI would otherwise lose with the machine: the server's log
# and each page's console (the screenshots stay in target/web-artifacts/).
if ! npm run --silent test:browser; then
  artifacts="${IRIS_WEB_ARTIFACTS:-../target/web-artifacts}"
  for f in "$artifacts"/server.log "$artifacts"/console-*.log; do
    [[ -e "$f" ]] || continue
    echo "----- $f (last 200 lines; the store's recovery lines left out) -----" >&2
    grep -v -e 'lsm_tree::' -e 'fjall::' "$f" | tail -n 200 >&2
  done
  exit 1
fi
