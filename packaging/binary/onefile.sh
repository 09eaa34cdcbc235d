#!/bin/sh
# edgellm @VERSION@, the single binary: this launcher, then the one-folder build packed as tar.gz (from byte
# $offset on). The first run unpacks it into a folder named by the version and the pack's SHA-256, under
# $EDGELLM_UNPACK_DIR, else $XDG_CACHE_HOME/edgellm/binary, else ~/.cache/edgellm/binary; every later run starts it
# from there at once. Where there is no such folder (no HOME), or it cannot be written (read-only, full) or run
# (noexec), each run unpacks into a temporary folder that edgellm removes when it exits. Written by
# packaging/binary/onefile.py.
key=@KEY@
offset=@OFFSET@
cache=${XDG_CACHE_HOME:-${HOME:+$HOME/.cache}}
base=${EDGELLM_UNPACK_DIR:-${cache:+$cache/edgellm/binary}}
if [ -n "$base" ] && [ -x "$base/$key/edgellm" ]; then
    exec "$base/$key/edgellm" "$@"
fi

unpack() {  # into the new, empty folder $1; true when the whole pack came out (its last file is the marker)
    tail -c +"$offset" "$0" | gzip -dc | tar -xf - -C "$1" && [ -f "$1/.edgellm-unpacked" ]
}

if [ -n "$base" ] && [ -L "$base/$key" ] && [ ! -e "$base/$key" ]; then
    rm -f "$base/$key"  # its folder was removed by hand: unpack again
fi
if [ -n "$base" ] && [ ! -e "$base/$key" ] && mkdir -p "$base" 2>/dev/null && tmp=$(mktemp -d "$base/.$key.XXXXXX" 2>/dev/null); then
    # Unpacked under a temporary name, then published by one symlink: a run never sees half a folder, and of
    # two first runs at once the first to publish wins (ln -sn fails on an existing name) and the other's copy goes.
    if unpack "$tmp" 2>/dev/null && ln -sn "${tmp##*/}" "$base/$key" 2>/dev/null; then
        if [ -x "$base/$key/edgellm" ]; then
            EDGELLM_UNPACKED=new exec "$base/$key/edgellm" "$@"
        fi
    else
        rm -rf "$tmp"
        if [ -x "$base/$key/edgellm" ]; then
            exec "$base/$key/edgellm" "$@"
        fi
    fi
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/edgellm-XXXXXX") || tmp=
if [ -n "$tmp" ] && unpack "$tmp" && [ -x "$tmp/edgellm" ]; then
    EDGELLM_UNPACKED=temporary exec "$tmp/edgellm" "$@"
fi
[ -n "$tmp" ] && rm -rf "$tmp"
echo "edgellm: error: cannot unpack the single binary into ${base:-a cache (no HOME)} or ${TMPDIR:-/tmp} (full," \
    "read-only or mounted noexec?); set EDGELLM_UNPACK_DIR to a folder where programs can be written and run" >&2
exit 2
