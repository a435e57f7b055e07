#!/bin/sh
# kiln install script: the one job of a bake builder, on every backend.
#
#   install.sh --root DIR --payload FILE --sha256 HEX --result FILE
#
# aws runs it from user-data with --root /; the local backend runs it
# against a throwaway directory (no chroot, no root needed). It
#   verify-payload  checks the payload's sha256 before touching anything,
#   unpack          unpacks it (bin/searchd, index/<name>.idx, etc/searchd.env,
#                   with [logs] etc/kiln/logs.env and etc/kiln/log-ca.pem),
#   layout          installs /opt/kiln/bin/searchd, /var/lib/kiln/<name>.idx,
#                   /etc/kiln/searchd.env,
#   unit            writes the hardened systemd unit and enables it,
#   logs            writes a journald drop-in (persistent, capped); with
#                   logs.env, /etc/kiln/log-ca.pem and an rsyslog forwarder
#                   (TLS only), and enables rsyslog,
#   check           runs `searchd check` on the installed snapshot, with the
#                   installed binary, from inside the new root,
# and writes the result file: first line `ok` or `failed <step>`, then the
# output (on success, `searchd check --json`). Exit status 0 or 1.
#
# It never creates users on the host: the unit uses systemd's DynamicUser.
# Everything it writes into the root is deterministic (no timestamps, no
# host names), so the same payload gives the same image bytes (on aws,
# forwarding may install rsyslog from the base image's own repository).
set -u
umask 022

ROOT="" PAYLOAD="" SHA256="" RESULT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT="${2-}"; shift 2 ;;
        --payload) PAYLOAD="${2-}"; shift 2 ;;
        --sha256) SHA256="${2-}"; shift 2 ;;
        --result) RESULT="${2-}"; shift 2 ;;
        *) echo "install.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [ -z "$ROOT" ] || [ -z "$PAYLOAD" ] || [ -z "$SHA256" ] || [ -z "$RESULT" ]; then
    echo "usage: install.sh --root DIR --payload FILE --sha256 HEX --result FILE" >&2
    exit 2
fi
ROOT="${ROOT%/}"  # "/" becomes "", so "$ROOT/opt" is "/opt"
WORK="$RESULT.work"
LOG="$RESULT.log"
STEP="start"
rm -rf "$WORK" && mkdir -p "$WORK" && : > "$LOG" || exit 1

report() {
    { echo "$1"; tail -c 65536 "$LOG"; } > "$RESULT.tmp" && mv "$RESULT.tmp" "$RESULT"
    rm -rf "$WORK" "$LOG"
}
fail() {
    [ $# -gt 0 ] && echo "$*" >> "$LOG"
    report "failed $STEP"
    exit 1
}
run() {
    "$@" >> "$LOG" 2>&1 || fail "command failed: $*"
}

STEP=verify-payload
[ -f "$PAYLOAD" ] || fail "payload $PAYLOAD does not exist"
actual=$(sha256sum "$PAYLOAD" 2>>"$LOG" | cut -d' ' -f1)
[ "$actual" = "$SHA256" ] || fail "payload sha256 mismatch: expected $SHA256, got ${actual:-nothing}"

STEP=unpack
run zstd -q -d -f -o "$WORK/payload.tar" "$PAYLOAD"
run tar -x -f "$WORK/payload.tar" -C "$WORK"
[ -f "$WORK/bin/searchd" ] || fail "payload has no bin/searchd"
[ -f "$WORK/etc/searchd.env" ] || fail "payload has no etc/searchd.env"
set -- "$WORK"/index/*.idx
[ $# -eq 1 ] && [ -f "$1" ] || fail "payload must hold exactly one index/<name>.idx"
INDEX_NAME=$(basename "$1" .idx)
SNAPSHOT="/var/lib/kiln/$INDEX_NAME.idx"

STEP=layout
run mkdir -p "$ROOT/opt/kiln/bin" "$ROOT/var/lib/kiln" "$ROOT/etc/kiln" \
    "$ROOT/etc/systemd/system/multi-user.target.wants"
run cp "$WORK/bin/searchd" "$ROOT/opt/kiln/bin/searchd"
run chmod 0755 "$ROOT/opt/kiln/bin/searchd"
run cp "$WORK/index/$INDEX_NAME.idx" "$ROOT$SNAPSHOT"
run chmod 0644 "$ROOT$SNAPSHOT"
{ cat "$WORK/etc/searchd.env" && echo "SEARCHD_SNAPSHOT=$SNAPSHOT"; } > "$ROOT/etc/kiln/searchd.env" \
    || fail "cannot write /etc/kiln/searchd.env"
chmod 0644 "$ROOT/etc/kiln/searchd.env"

STEP=unit
cat > "$ROOT/etc/systemd/system/searchd.service" <<'UNIT' || fail "cannot write the unit"
[Unit]
Description=kiln searchd (Picky-compatible search daemon)
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=60s
StartLimitBurst=5

[Service]
Type=exec
EnvironmentFile=/etc/kiln/searchd.env
ExecStartPre=/opt/kiln/bin/searchd check --snapshot ${SEARCHD_SNAPSHOT}
ExecStart=/opt/kiln/bin/searchd serve --snapshot ${SEARCHD_SNAPSHOT} --listen ${SEARCHD_LISTEN}
# searchd logs to stderr (SEARCHD_LOG filters it): into the journal as
# `searchd` (journalctl -t searchd), and from there to rsyslog if forwarding.
StandardOutput=journal
StandardError=journal
SyslogIdentifier=searchd
# A dedicated, unprivileged user that exists only while the service runs:
# nothing is added to /etc/passwd on the image.
DynamicUser=yes
User=searchd
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
CapabilityBoundingSet=
AmbientCapabilities=
UMask=0077
LimitNOFILE=65536
# SIGTERM: /ready turns 503, in-flight requests finish, then exit.
KillSignal=SIGTERM
TimeoutStopSec=30s
Restart=on-failure
RestartSec=2s

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$ROOT/etc/systemd/system/searchd.service"
run ln -sfn /etc/systemd/system/searchd.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/searchd.service"

STEP=logs
run mkdir -p "$ROOT/etc/systemd/journald.conf.d"
cat > "$ROOT/etc/systemd/journald.conf.d/kiln.conf" <<'JOURNALD' || fail "cannot write the journald drop-in"
# kiln (images/install.sh): the journal on disk, across reboots, capped.
[Journal]
Storage=persistent
SystemMaxUse=512M
SystemKeepFree=1G
JOURNALD
chmod 0644 "$ROOT/etc/systemd/journald.conf.d/kiln.conf"

LOGS="$WORK/etc/kiln/logs.env" CA="$WORK/etc/kiln/log-ca.pem"
if [ -f "$LOGS" ]; then
    [ -f "$CA" ] || fail "payload asks to forward logs (etc/kiln/logs.env) but has no etc/kiln/log-ca.pem: no forwarding without the collector's CA"
    grep -q '^-----BEGIN CERTIFICATE-----' "$CA" || fail "etc/kiln/log-ca.pem holds no PEM certificate"
    setting() { sed -n "s/^KILN_LOG_$1=//p" "$LOGS" | tail -n 1; }
    HOST=$(setting HOST) PORT=$(setting PORT) PEER=$(setting PEER)
    # bake checked them; they go into quoted rsyslog strings: once more.
    for v in "$HOST" "$PORT" "$PEER"; do
        case "$v" in ''|*[!A-Za-z0-9.:*-]*) fail "etc/kiln/logs.env: bad or missing value '$v'" ;; esac
    done
    has_rsyslog() {
        [ -x "$ROOT/usr/sbin/rsyslogd" ] || [ -x "$ROOT/sbin/rsyslogd" ] || return 1
        [ "${1-}" ] || return 0
        for f in "$ROOT"/usr/lib*/rsyslog/lmnsd_gtls.so "$ROOT"/usr/lib*/*/rsyslog/lmnsd_gtls.so; do
            [ -f "$f" ] && return 0
        done
        return 1
    }
    # The machine being imaged (--root /) installs what its base lacks
    # (AL2023 has no rsyslog). A directory root (local) cannot: there a
    # base without rsyslogd gets the configuration alone.
    if [ -z "$ROOT" ] && ! has_rsyslog tls; then
        if command -v dnf >/dev/null 2>&1; then
            run dnf -y -q install rsyslog rsyslog-gnutls
        elif command -v apt-get >/dev/null 2>&1; then
            run apt-get -q update
            run env DEBIAN_FRONTEND=noninteractive apt-get -y -q install rsyslog rsyslog-gnutls
        fi
    fi
    if [ -z "$ROOT" ] || has_rsyslog; then
        has_rsyslog || fail "no rsyslogd, and no dnf or apt-get to install it: the base image needs rsyslog and rsyslog-gnutls"
        has_rsyslog tls || fail "rsyslog has no TLS driver (lmnsd_gtls.so): the base image needs rsyslog-gnutls"
    fi
    # Loading imjournal twice is an error; RHEL-like bases load it.
    # shellcheck disable=SC2016
    if grep -Eqs '^[[:space:]]*(module[[:space:]]*\([^)]*imjournal|\$ModLoad[[:space:]]+imjournal)' \
        "$ROOT/etc/rsyslog.conf" "$ROOT"/etc/rsyslog.d/*.conf; then
        IMJOURNAL="# imjournal: loaded by the base image's rsyslog.conf"
    else
        IMJOURNAL='module(load="imjournal" StateFile="/var/lib/kiln/rsyslog/imjournal.state")'
    fi
    run mkdir -p "$ROOT/etc/rsyslog.d" "$ROOT/var/lib/kiln/rsyslog"
    run chmod 0700 "$ROOT/var/lib/kiln/rsyslog"
    run cp "$CA" "$ROOT/etc/kiln/log-ca.pem"
    run chmod 0644 "$ROOT/etc/kiln/log-ca.pem"
    cat > "$ROOT/etc/rsyslog.d/60-kiln-forward.conf" <<RSYSLOG || fail "cannot write the rsyslog forwarder"
# kiln (images/install.sh): the journal to $HOST:$PORT, over TLS only;
# the collector's certificate must chain to /etc/kiln/log-ca.pem and name
# $PEER. Unsent messages queue, spilling to disk (1 GiB), across restarts.
$IMJOURNAL
ruleset(name="kiln-forward") {
    action(type="omfwd" name="kiln-forward" target="$HOST" port="$PORT" protocol="tcp"
        template="RSYSLOG_SyslogProtocol23Format" TCP_Framing="octet-counted"
        StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
        StreamDriverPermittedPeers="$PEER" StreamDriver.CAFile="/etc/kiln/log-ca.pem"
        queue.type="LinkedList" queue.size="10000" queue.filename="kiln-forward"
        queue.spoolDirectory="/var/lib/kiln/rsyslog" queue.maxDiskSpace="1g"
        queue.saveOnShutdown="on" action.resumeRetryCount="-1" action.resumeInterval="10")
}
if \$inputname == "imjournal" then call kiln-forward
RSYSLOG
    chmod 0644 "$ROOT/etc/rsyslog.d/60-kiln-forward.conf"
    # systemd reads the unit's name from the link.
    run ln -sfn /usr/lib/systemd/system/rsyslog.service \
        "$ROOT/etc/systemd/system/multi-user.target.wants/rsyslog.service"
elif [ -f "$CA" ]; then
    fail "payload has etc/kiln/log-ca.pem but no etc/kiln/logs.env"
fi

STEP=check
if "$ROOT/opt/kiln/bin/searchd" check --snapshot "$ROOT$SNAPSHOT" --json > "$WORK/check.json" 2>> "$LOG"; then
    cp "$WORK/check.json" "$LOG"
    report ok
    exit 0
fi
cat "$WORK/check.json" >> "$LOG"
fail
