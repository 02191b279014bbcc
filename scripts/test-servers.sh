# Sourced by scripts/test: start throw-away PostgreSQL and MariaDB servers
# on 127.0.0.1 in a temporary directory, export their URLs (and, for the
# outage tests, commands that stop and start them again), and stop them
# all on exit.
#
# Two instances of each run: one shared by the conformance tests, and one
# that the outage tests stop and start without disturbing the others.

servers_dir=$(mktemp -d /tmp/devicepass-servers.XXXXXX)
chmod 755 "$servers_dir"
server_stops=()

pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# Run a command as the PostgreSQL user (postgres refuses to run as root).
as_pg() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_postgres NAME: prints the admin URL; sets ${NAME}_stop/_start.
start_postgres() {
    local name=$1 dir="$servers_dir/pg-$1" port
    port=$(free_port)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
    as_pg "$pg_bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 \
        --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1
    local ctl="$pg_bin/pg_ctl -D $dir/data -l $dir/server.log -w"
    local opts="-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c full_page_writes=off"
    local start stop
    if [ "$(id -u)" -eq 0 ]; then
        start="runuser -u postgres -- $ctl -o '$opts' start"
        stop="runuser -u postgres -- $ctl -m fast stop"
    else
        start="$ctl -o '$opts' start"
        stop="$ctl -m fast stop"
    fi
    eval "$start" >/dev/null
    server_stops+=("$stop")
    printf -v "${name}_start" '%s' "$start"
    printf -v "${name}_stop" '%s' "$stop"
    printf -v "${name}_url" '%s' "postgresql://postgres@127.0.0.1:$port/postgres"
}

# start_mariadb NAME: sets ${NAME}_url, ${NAME}_stop and ${NAME}_start.
start_mariadb() {
    local name=$1 dir="$servers_dir/mariadb-$1" port user_opt=""
    port=$(free_port)
    mkdir -p "$dir"
    [ "$(id -u)" -eq 0 ] && user_opt="--user=root"
    mariadb-install-db --no-defaults --datadir="$dir/data" $user_opt \
        --auth-root-authentication-method=normal --skip-test-db >"$dir/install.log" 2>&1
    local start="mariadbd --no-defaults --datadir=$dir/data --socket=$dir/sock --port=$port \
--bind-address=127.0.0.1 $user_opt --pid-file=$dir/pid --skip-log-bin \
--innodb-flush-log-at-trx-commit=0 --log-error=$dir/server.log"
    start="($start >/dev/null 2>&1 &) ; for i in \$(seq 100); do mariadb-admin --no-defaults -S $dir/sock -u root ping >/dev/null 2>&1 && break; sleep 0.1; done"
    local stop="mariadb-admin --no-defaults -S $dir/sock -u root shutdown"
    eval "$start"
    mariadb --no-defaults -S "$dir/sock" -u root -e "
        CREATE USER 'dp'@'%' IDENTIFIED BY 'dp';
        CREATE USER 'dp'@'localhost' IDENTIFIED BY 'dp';
        GRANT ALL ON *.* TO 'dp'@'%';
        GRANT ALL ON *.* TO 'dp'@'localhost';
        FLUSH PRIVILEGES;"
    server_stops+=("$stop")
    printf -v "${name}_start" '%s' "$start"
    printf -v "${name}_stop" '%s' "$stop"
    printf -v "${name}_url" '%s' "mysql://dp:dp@127.0.0.1:$port/mysql"
}

stop_servers() {
    for stop in "${server_stops[@]}"; do eval "$stop" >/dev/null 2>&1 || true; done
    rm -rf "$servers_dir"
}
trap stop_servers EXIT

start_postgres pg
start_postgres pg_outage
start_mariadb my
start_mariadb my_outage

export DEVICEPASS_TEST_POSTGRES_URL=$pg_url
export DEVICEPASS_TEST_POSTGRES_OUTAGE_URL=$pg_outage_url
export DEVICEPASS_TEST_POSTGRES_OUTAGE_STOP=$pg_outage_stop
export DEVICEPASS_TEST_POSTGRES_OUTAGE_START=$pg_outage_start
export DEVICEPASS_TEST_MYSQL_URL=$my_url
export DEVICEPASS_TEST_MYSQL_OUTAGE_URL=$my_outage_url
export DEVICEPASS_TEST_MYSQL_OUTAGE_STOP=$my_outage_stop
export DEVICEPASS_TEST_MYSQL_OUTAGE_START=$my_outage_start
# A missing server is then a failure, not a skipped engine.
export DEVICEPASS_TEST_REQUIRE_SERVERS=1
