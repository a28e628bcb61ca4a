#!/usr/bin/env bash
# make demo: cairn as an appliance against an embedded vCenter (cairn lab):
# `cairn serve` backs up every lab VM every 30 seconds (agentless:
# snapshot + changed block tracking) into ./demo/repo and keeps the
# recovery points mounted at ./demo/mnt as plain files.
# Runs until Ctrl-C (or for DEMO_SECONDS seconds), then stops everything
# cleanly: no mount, snapshot or process is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
CAIRN="$PWD/bin/cairn"
DEMO="$PWD/demo"
export CAIRN_REPO="$DEMO/repo"
LISTEN="${DEMO_LISTEN:-127.0.0.1:8480}"
API="http://$LISTEN"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

lab_pid="" serve_pid=""
cleanup() {
  trap - EXIT INT TERM
  if [ -n "$serve_pid" ]; then
    echo; echo "stopping cairn serve (running backups abort, their snapshots are removed, the mount is released)..."
    kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null || true
  fi
  [ -n "$lab_pid" ] && kill -TERM "$lab_pid" 2>/dev/null && wait "$lab_pid" 2>/dev/null || true
  if mountpoint -q "$DEMO/mnt" 2>/dev/null; then
    echo "the mount was still there; unmounting"; umount -l "$DEMO/mnt" || true
  fi
  echo "stopped. The repository stays in $DEMO/repo (cairn --repo $DEMO/repo points)."
}
trap cleanup EXIT
trap 'exit 0' INT TERM   # Ctrl-C is how the demo ends

[ -d "$DEMO/mnt" ] && mountpoint -q "$DEMO/mnt" && umount -l "$DEMO/mnt"
rm -rf "$DEMO"
mkdir -p "$DEMO"

say "Start cairn lab: a simulated vCenter (2 ESXi hosts) with 2 VMs whose guests keep changing files"
"$CAIRN" lab --dir "$DEMO/lab" --vms 2 --interval 3s --schedule 30s --serve-listen "$LISTEN" > "$DEMO/lab.out" 2> "$DEMO/lab.log" &
lab_pid=$!
for _ in $(seq 150); do
  [ -s "$DEMO/lab/cairn.yaml" ] && grep -q '^thumbprint:' "$DEMO/lab.out" && break
  kill -0 "$lab_pid" 2>/dev/null || { cat "$DEMO/lab.out" "$DEMO/lab.log"; exit 1; }
  sleep 0.2
done
sed -n '1,9p' "$DEMO/lab.out"
echo "(the lab's log: $DEMO/lab.log)"

say "A cairn.yaml for cairn serve: every VM tagged backup:daily, every 30 s, into ./demo/repo, mounted at ./demo/mnt"
mount_ok=1
if [ "$(id -u)" -ne 0 ] || [ ! -e /dev/fuse ]; then
  mount_ok=0
  echo "(not root or no /dev/fuse: serve runs without the mount)"
fi
sed -e "s|^repository: .*|repository: $DEMO/repo|" \
    -e "s|^mount: .*|mount: $DEMO/mnt|" \
    "$DEMO/lab/cairn.yaml" > "$DEMO/cairn.yaml"
[ "$mount_ok" -eq 1 ] || sed -i '/^mount: /d' "$DEMO/cairn.yaml"
cat "$DEMO/cairn.yaml"
run "$CAIRN" init

say "cairn serve: it mounts the repository and runs the job now and every 30 s"
"$CAIRN" serve --config "$DEMO/cairn.yaml" > "$DEMO/serve.log" 2>&1 &
serve_pid=$!
echo "logs (JSON, one line per event, with job id, VM and disk): $DEMO/serve.log"
points_of() { "$CAIRN" points --vm "$1" --json 2>/dev/null | grep -c '"generation"' || true; }
wait_points() {
  for _ in $(seq 300); do
    kill -0 "$serve_pid" 2>/dev/null || { echo "cairn serve exited:"; tail -20 "$DEMO/serve.log"; exit 1; }
    if [ "$(points_of lab-vm-1)" -ge "$1" ] && [ "$(points_of lab-vm-2)" -ge "$1" ]; then return 0; fi
    sleep 0.5
  done
  echo "no backups after 150 s:"; tail -20 "$DEMO/serve.log"; exit 1
}
wait_points 1
run "$CAIRN" status

say "The web console: open this address in a browser (the token after # logs you in and stays in the tab)"
echo "  $API/ui/#token=$(cat "$DEMO/repo/api-token")"
if command -v curl >/dev/null; then
  echo "  (GET $API/ui/ answers $(curl -s -o /dev/null -w '%{http_code}' "$API/ui/"))"
fi
echo "  That token is the admin token serve made (api-token). Give people their own, with a role:"
echo "    cairn serve token add alice --role viewer --expires 90d     (viewer, operator or admin; docs/security.md)"

if [ "$mount_ok" -eq 1 ]; then
  say "Every recovery point is plain files"
  run ls -l "$DEMO/mnt/lab-vm-1"
  run ls -l "$DEMO/mnt/lab-vm-1/latest/disks"
  run cat "$DEMO/mnt/lab-vm-1/latest/fs/scsi0-0/p1/etc/hostname"
  run head -3 "$DEMO/mnt/lab-vm-1/latest/fs/scsi0-0/p1/var/log/app.log"
  run cp --sparse=always "$DEMO/mnt/lab-vm-1/latest/disks/scsi0-0.img" "$DEMO/exported.img"
  du -h --apparent-size "$DEMO/exported.img" | sed 's/^/apparent  /'
  du -h "$DEMO/exported.img" | sed 's/^/allocated /'
  command -v qemu-img >/dev/null && run qemu-img info "$DEMO/mnt/lab-vm-1/latest/disks/scsi0-0.vmdk"
fi

say "Restore files without the mount: straight out of a point's guest filesystem"
run "$CAIRN" restore-file --vm lab-vm-1 --point latest --disk scsi0-0 --part 1 /etc "$DEMO/restored/"
run ls "$DEMO/restored/etc"

say "Metrics for Prometheus"
if command -v curl >/dev/null; then
  curl -s -H "Authorization: Bearer $(cat "$DEMO/repo/api-token")" "$API/metrics" | grep -E '^cairn_(points|last_backup_read_bytes|vm_stored_bytes|repository_bytes)' || true
fi

say "The guests keep writing; a backup now (through serve) reads only what CBT says changed"
echo "(letting the guests write for 4 s first)"; sleep 4
run "$CAIRN" trigger --vm lab-vm-1 --vm lab-vm-2 --wait
run "$CAIRN" points
run "$CAIRN" jobs --last 6
run "$CAIRN" history --vm lab-vm-1 /var/log/app.log

cat <<TXT

cairn serve keeps running: a new recovery point of each VM every 30 seconds.
Try, in another shell:
  ls $DEMO/mnt/lab-vm-2/                          every point, and 'latest'
  ls $DEMO/mnt/lab-vm-2/latest/fs/                guest files of every disk and partition
  cp $DEMO/mnt/lab-vm-1/latest/fs/scsi0-0/p1/etc/hostname /tmp/   restore a file
  $API/ui/#token=$(cat "$DEMO/repo/api-token")   the web console
  qemu-img info $DEMO/mnt/lab-vm-1/latest/disks/scsi0-0.vmdk
  TOKEN=\$(cat $DEMO/repo/api-token)                  the API's bearer token (docs/security.md)
  curl -s -H "Authorization: Bearer \$TOKEN" $API/metrics | grep ^cairn_
  curl -s -H "Authorization: Bearer \$TOKEN" $API/api/v1/status
  curl -s -H "Authorization: Bearer \$TOKEN" -H 'Content-Type: application/json' \\
       -d '{"vm":"lab-vm-1"}' $API/api/v1/jobs            back up now
  CAIRN_REPO=$DEMO/repo $CAIRN status
Press Ctrl-C to stop everything.
TXT
if [ -n "${DEMO_SECONDS:-}" ]; then
  sleep "$DEMO_SECONDS"
else
  wait "$serve_pid" || true
  serve_pid=""
fi
