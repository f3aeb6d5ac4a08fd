#!/bin/bash
# Create the users the rootless specs run nsbuild as, if missing. Running it
# again changes nothing.
#
#   nsbuild-test        with 65536 subordinate uids and gids
#   nsbuild-test-noids  without subordinate ids (the single-id mapping)
#
# The range starts after the highest range /etc/subuid and /etc/subgid already
# list (at 100000 when they list none), so it collides with no other user's.
# It also opens /dev/net/tun to users (below). Prints nothing on success; needs root.
set -euo pipefail

with_ids=nsbuild-test
without_ids=nsbuild-test-noids
count=65536

# The first id after every range of the files given, or 100000.
next_free() {
  awk -F: 'NF >= 3 { end = $2 + $3; if (end > max) max = end }
           END { print (max > 100000 ? max : 100000) }' "$@" 2>/dev/null || echo 100000
}

# useradd gives a new user subordinate ids when login.defs sets SUB_UID_COUNT,
# as Debian's does; -K turns that off, so that the ranges are chosen here.
create() {
  if ! id -u "$1" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$1"
  fi
}

# Remove every subordinate range of user $2 from file $1.
remove_ranges() {
  sed -i "/^$2:/d" "$1"
}

create "$with_ids"
create "$without_ids"
touch /etc/subuid /etc/subgid
remove_ranges /etc/subuid "$without_ids"
remove_ranges /etc/subgid "$without_ids"

if ! grep -q "^$with_ids:" /etc/subuid; then
  start=$(next_free /etc/subuid)
  usermod --add-subuids "$start-$((start + count - 1))" "$with_ids"
fi
if ! grep -q "^$with_ids:" /etc/subgid; then
  start=$(next_free /etc/subgid)
  usermod --add-subgids "$start-$((start + count - 1))" "$with_ids"
fi

# slirp4netns, the network of build steps, opens /dev/net/tun from inside the
# container's user namespace. udev gives the node mode 0666; a machine without
# udev may leave it 0600, which only the host's root can open.
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" = 600 ]; then
  chmod 0666 /dev/net/tun
fi
