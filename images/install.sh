#!/bin/sh
# kiln install script: the one job of a bake builder, on every backend.
#
#   install.sh --root DIR --payload FILE --sha256 HEX --result FILE
#
# aws runs it from user-data with --root /; the local backend runs it
# against a throwaway directory (no chroot, no root needed). It
#   verify-payload  checks the payload's sha256 before touching anything,
#   unpack          unpacks it (bin/searchd, index/<name>.idx, etc/searchd.env),
#   layout          installs /opt/kiln/bin/searchd, /var/lib/kiln/<name>.idx,
#                   /etc/kiln/searchd.env,
#   unit            writes the hardened systemd unit and enables it,
#   check           runs `searchd check` on the installed snapshot, with the
#                   installed binary, from inside the new root,
# and writes the result file: first line `ok` or `failed <step>`, then the
# output (on success, `searchd check --json`). Exit status 0 or 1.
#
# It never creates users on the host: the unit uses systemd's DynamicUser.
# Everything it writes into the root is deterministic (no timestamps, no
# host names), so the same payload gives the same image bytes.
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

[Service]
Type=exec
EnvironmentFile=/etc/kiln/searchd.env
ExecStartPre=/opt/kiln/bin/searchd check --snapshot ${SEARCHD_SNAPSHOT}
ExecStart=/opt/kiln/bin/searchd serve --snapshot ${SEARCHD_SNAPSHOT} --listen ${SEARCHD_LISTEN}
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
StartLimitIntervalSec=60s
StartLimitBurst=5

[Install]
WantedBy=multi-user.target
UNIT
chmod 0644 "$ROOT/etc/systemd/system/searchd.service"
run ln -sfn /etc/systemd/system/searchd.service \
    "$ROOT/etc/systemd/system/multi-user.target.wants/searchd.service"

STEP=check
if "$ROOT/opt/kiln/bin/searchd" check --snapshot "$ROOT$SNAPSHOT" --json > "$WORK/check.json" 2>> "$LOG"; then
    cp "$WORK/check.json" "$LOG"
    report ok
    exit 0
fi
cat "$WORK/check.json" >> "$LOG"
fail
