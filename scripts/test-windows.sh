#!/usr/bin/env bash
# The Windows half of CI, from Linux: lints the workspace for x86_64-pc-windows-gnu, builds
# echoport.exe and echoport-load.exe (debug: a release build with fat LTO takes minutes longer and
# the suite does not need its speed), then runs tests/windows.rs, which starts `wine echoport.exe`
# and talks to it over 127.0.0.1. scripts/test.sh runs it.
#
# As root, installs what is missing: mingw-w64 (the target's linker, and the DLL shim below) and
# Wine (Debian's wine64 8.0), and the rustup target. No display is needed: the programs are
# console programs, and DISPLAY is unset so Wine never tries to open one.
#
# Wine 8.0 lacks bcryptprimitives.dll, which Rust's std (1.78+) imports for ProcessPrng, so no
# Rust .exe would load; scripts/wine/bcryptprimitives.c is a stand-in, built beside the .exe
# files, for these tests only (it never ships).
#
# The Wine prefix lives in target/wine-prefix: created on the first run (about 15 s), reused after.
# The script starts the prefix's wineserver itself (persistent) and warms it up with output going
# nowhere: the Windows services a wineserver starts inherit the stdout/stderr of the program that
# caused them, which would otherwise be a test's pipe, held open for as long as they live. At the
# end `wineserver --kill` ends that server and everything still running in the prefix.
set -euo pipefail
cd "$(dirname "$0")/.."

target=x86_64-pc-windows-gnu

need=()
command -v x86_64-w64-mingw32-gcc >/dev/null || need+=(gcc-mingw-w64-x86-64)
{ command -v wine && command -v wineserver; } >/dev/null || need+=(wine wine64)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "# installing ${need[*]}" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "error: missing ${need[*]} (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi
if ! rustup target list --installed | grep -qx "$target"; then
  echo "# adding the rustup target $target" >&2
  rustup --quiet target add "$target"
fi

cargo clippy --locked --target "$target" --workspace --all-targets -- -D warnings
cargo build --locked --target "$target" --bins -p echoport -p echoport-load
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
exe_dir="$target_dir/$target/debug"
shim=scripts/wine/bcryptprimitives.c
if [ ! "$exe_dir/bcryptprimitives.dll" -nt "$shim" ]; then
  x86_64-w64-mingw32-gcc -shared -O2 -Wall -Wextra -Werror -o "$exe_dir/bcryptprimitives.dll" "$shim" -ladvapi32
fi

unset DISPLAY WAYLAND_DISPLAY
export WINEPREFIX="$target_dir/wine-prefix" WINEDEBUG=-all
# No .NET or browser engine to install (they would be downloaded), no menu entries in $HOME.
export WINEDLLOVERRIDES="mscoree=;mshtml=;winemenubuilder.exe=d"
if [ ! -f "$WINEPREFIX/system.reg" ]; then
  echo "# creating the Wine prefix $WINEPREFIX (once)" >&2
  wine wineboot --init </dev/null >/dev/null 2>&1
fi
# A server Wine started by itself (wineboot's) ends a few seconds after its last program.
timeout 30 wineserver --wait || true

# Returns once the server is ready (0), or at once if the prefix has one already (2).
if wineserver --persistent </dev/null >/dev/null 2>&1; then
  # Ends the server this script started and every program still running in its prefix.
  trap 'wineserver --kill; timeout 30 wineserver --wait || true' EXIT
else
  echo "note: $WINEPREFIX already has a wineserver; using it" >&2
fi
# Brings up the prefix's services now, with nowhere to write.
wine "$exe_dir/echoport.exe" --version </dev/null >/dev/null 2>&1

WINE_EXE_DIR="$exe_dir" cargo test --locked -p echoport --test windows -- --ignored
