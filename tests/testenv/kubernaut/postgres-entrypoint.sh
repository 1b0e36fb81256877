#!/bin/sh
# The postgres stand-in's entrypoint: the official image's docker-entrypoint.sh as Kubernaut's
# manifest uses it. First start on an empty PGDATA: initdb with POSTGRES_USER and
# POSTGRES_PASSWORD, listen on all addresses, password (scram-sha-256) for remote hosts,
# POSTGRES_DB created by a server on the unix socket only (a TCP readiness probe does not
# pass early), /docker-entrypoint-initdb.d/*.sql|*.sh run; then postgres in the foreground.
set -eu

# Options alone (`args: ["-c", "max_connections=200"]`) are postgres's.
if [ "${1#-}" != "$1" ]; then set -- postgres "$@"; fi
# Anything else (the migrations image's /bin/sh) runs as given.
if [ "$1" != postgres ]; then exec "$@"; fi
shift

# Started as root: PGDATA (a fresh volume is root's) for postgres, then run as postgres.
if [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
  chmod 0700 "$PGDATA"
  chown postgres:postgres /var/run/postgresql && chmod 3777 /var/run/postgresql
  export HOME=/var/lib/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

mkdir -p "$PGDATA" 2>/dev/null || :  # as the official image: initdb says what is wrong
chmod 0700 "$PGDATA" 2>/dev/null || :
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "postgres stand-in: POSTGRES_PASSWORD is empty; the database needs a superuser password" >&2
    exit 1
  fi
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS holds several options, as upstream
  initdb --username="$user" --pwfile="$pwfile" ${POSTGRES_INITDB_ARGS:-}
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  echo 'host all all all scram-sha-256' >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start
  sql() { psql -v ON_ERROR_STOP=1 -X -q --username "$user" --no-password "$@"; }
  # initdb made the database "postgres" alone; the official image creates any other.
  if [ "$db" != postgres ]; then
    echo 'CREATE DATABASE :"db";' | sql --dbname postgres --set db="$db"
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case $f in
      *.sh) echo "running $f"
        # shellcheck source=/dev/null
        . "$f" ;;
      *.sql) echo "running $f"; sql --dbname "$db" -f "$f" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "postgres stand-in: initialised $PGDATA (user $user, database $db)"
fi
exec postgres -D "$PGDATA" "$@"
