#!/bin/sh
# The redis stand-in's entrypoint: the official redis image's docker-entrypoint.sh, in short.
set -eu

# Options alone (or a .conf file) are redis-server's.
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then set -- redis-server "$@"; fi

# Started as root: run as redis (the official image uses gosu; setpriv is util-linux's).
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

[ "$(umask)" != 0022 ] || umask 0077

# No config file that sets protected-mode: turn it off, or redis (bound to all addresses with
# no password) refuses every client that is not on loopback, i.e. every other pod.
if [ "$1" = redis-server ]; then
  shift
  conf=
  if [ -f "${1:-}" ]; then conf=$1; shift; fi
  if [ -z "$conf" ] || ! grep -q '^protected-mode' "$conf"; then set -- --protected-mode no "$@"; fi
  if [ -n "$conf" ]; then set -- "$conf" "$@"; fi
  set -- redis-server "$@"
fi
exec "$@"
