#!/bin/sh
# FLOW_HEADLESS=false asks for a headed browser (Google trusts it more); a server has no screen,
# so run the command under a virtual one.
set -e
case "${FLOW_HEADLESS:-true}" in
  false|0|no|off)
    if [ -z "${DISPLAY:-}" ]; then
      exec xvfb-run --auto-servernum --server-args="-screen 0 1280x900x24" "$@"
    fi
    ;;
esac
exec "$@"
