#!/usr/bin/env bash
# Install edgellm's systemd service: the `edgellm` system user, the unit in /etc/systemd/system and the
# settings in /etc/edgellm/edgellm.env. Safe to run again: it updates the unit, never overwrites an
# existing environment file (it holds your API key) and never starts the service.
#
# Usage: sudo packaging/systemd/install.sh
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SERVICE_USER=edgellm
STATE_DIR=/var/lib/edgellm
UNIT_DEST=/etc/systemd/system/edgellm.service
ENV_DIR=/etc/edgellm
ENV_DEST="$ENV_DIR/edgellm.env"
BINARY=/usr/local/bin/edgellm

say() { printf 'install.sh: %s\n' "$*"; }
fail() { printf 'install.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || fail "run as root: sudo $0"
command -v systemctl >/dev/null 2>&1 || fail "systemctl not found: this script needs a systemd system"
for file in edgellm.service edgellm.env; do
    [[ -f "$HERE/$file" ]] || fail "$HERE/$file is missing: run this script from an edgellm checkout"
done

# 1. The system user (no login, home = the state directory, which systemd creates via StateDirectory=).
if id -u "$SERVICE_USER" >/dev/null 2>&1; then
    say "user $SERVICE_USER exists"
else
    nologin=/usr/sbin/nologin
    [[ -x $nologin ]] || nologin=/sbin/nologin
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home --shell "$nologin" \
        --comment "edgellm model server" "$SERVICE_USER"
    say "created system user $SERVICE_USER"
fi

# The state directory; systemd would create it at the first start (StateDirectory=), but a model can be
# pulled into it before that (see the README).
install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"

# GPU access on boards such as Jetson (/dev/nvhost-*, /dev/nvmap, /dev/dri/*): the video and render groups.
for group in video render; do
    if getent group "$group" >/dev/null 2>&1; then
        if id -nG "$SERVICE_USER" | tr ' ' '\n' | grep -qx "$group"; then
            say "user $SERVICE_USER is already in group $group"
        else
            usermod --append --groups "$group" "$SERVICE_USER"
            say "added user $SERVICE_USER to group $group (GPU access)"
        fi
    fi
done

# 2. The unit (replaced on every run; local changes belong in `systemctl edit edgellm`).
install -m 0644 -o root -g root "$HERE/edgellm.service" "$UNIT_DEST"
say "installed $UNIT_DEST"

# 3. The environment file: only if absent, so a configured model and key survive a reinstall.
install -d -m 0755 -o root -g root "$ENV_DIR"
if [[ -e "$ENV_DEST" ]]; then
    say "kept existing $ENV_DEST (compare with $HERE/edgellm.env for new settings)"
else
    install -m 0640 -o root -g "$SERVICE_USER" "$HERE/edgellm.env" "$ENV_DEST"
    say "installed $ENV_DEST (mode 0640 root:$SERVICE_USER)"
fi

systemctl daemon-reload
say "reloaded systemd"

# 4. The executable the unit runs.
if [[ -x "$BINARY" ]]; then
    target="$(readlink -f "$BINARY")"
    say "$BINARY -> $target"
    case "$target" in
        /home/*|/root/*|/run/user/*)
            say "warning: the unit runs with ProtectHome=yes, so it cannot see $target;"
            say "         install it outside /home and re-link: EDGELLM_INSTALL_DIR=/opt/edgellm python3 scripts/install.py --user,"
            say "         or add ProtectHome=read-only with \`systemctl edit edgellm\`" ;;
    esac
elif [[ -L "$BINARY" ]]; then
    say "warning: $BINARY is a broken link (to $(readlink "$BINARY")): re-link it to an existing edgellm"
else
    say "warning: $BINARY does not exist yet; the service needs it."
    say "  From the single binary (python3 packaging/build_binary.py), copy its folder and link it:"
    say "    sudo cp -r dist/edgellm-dir /opt/edgellm-dir && sudo ln -sf /opt/edgellm-dir/edgellm $BINARY"
    say "  From a checkout, a user install outside /home (ProtectHome=yes), readable by the $SERVICE_USER user:"
    say "    sudo mkdir /opt/edgellm && sudo chown \"\$USER\" /opt/edgellm"
    say "    EDGELLM_INSTALL_DIR=/opt/edgellm EDGELLM_BIN_DIR=/opt/edgellm/launcher python3 scripts/install.py --user"
    say "    sudo ln -sf /opt/edgellm/bin/edgellm $BINARY"
fi

cat <<NEXT

Next steps:
  1. Set the model, address and API key:   sudoedit $ENV_DEST
  2. Start it now and at every boot:        sudo systemctl enable --now edgellm
  3. Follow its log:                        journalctl -u edgellm -f
  4. Check it (200 once the model loaded):  curl localhost:8080/health   (or your EDGELLM_PORT)
NEXT
