#!/bin/sh
# FLOW_HEADLESS=false (the default: flow.google.com refuses headless Chromium) asks for a headed
# browser; a server has no screen, so run the command under a virtual one. (The worker starts
# Xvfb itself when DISPLAY is unset; doing it here keeps one display for the process's life.)
# The web process sets FLOW_HEADLESS=true or runs no browser at all: see render.yaml.
set -e
case "${FLOW_HEADLESS:-false}" in
  false|0|no|off)
    if [ -z "${DISPLAY:-}" ]; then
      exec xvfb-run --auto-servernum --server-args="-screen 0 1280x900x24" "$@"
    fi
    ;;
esac
exec "$@"
