#!/usr/bin/env bash
# Install NovelGen Desktop from this unpacked folder for the current user (no root needed):
#   the menu entry   ${XDG_DATA_HOME:-~/.local/share}/applications/novelgen.desktop
#   the icon         ${XDG_DATA_HOME:-~/.local/share}/icons/hicolor/<size>/apps/novelgen.*
#   the command      ~/.local/bin/novelgen (a symlink to this folder's binary)
# The folder itself stays where it is (the menu entry points into it): move it first, then
# run this. `./install.sh --uninstall` removes exactly these three things; the folder, your
# jobs and settings stay (see docs/install.md, "Uninstalling").
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd -P)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
bin="$HOME/.local/bin"
apps="$data/applications"
icons="$data/icons/hicolor"
sizes=(16x16 32x32 48x48 128x128 256x256)

refresh() {
    # Menus and icon themes notice new files by themselves; an icon cache that is already
    # there is brought up to date (one made here where none was could hide other apps' icons).
    if [ -f "$icons/icon-theme.cache" ] && command -v gtk-update-icon-cache >/dev/null 2>&1; then
        gtk-update-icon-cache -q -t "$icons" 2>/dev/null || true
    fi
}

if [ "${1:-}" = "--uninstall" ]; then
    rm -f "$apps/novelgen.desktop" "$icons/scalable/apps/novelgen.svg"
    for size in "${sizes[@]}"; do
        rm -f "$icons/$size/apps/novelgen.png"
    done
    # Only our own symlink: a novelgen installed some other way is not ours to remove.
    if [ -L "$bin/novelgen" ] && [ "$(readlink "$bin/novelgen")" = "$here/novelgen" ]; then
        rm -f "$bin/novelgen"
    fi
    refresh
    echo "NovelGen Desktop's menu entry, icon and command removed; $here and your data are kept."
    exit 0
elif [ $# -gt 0 ]; then
    echo "usage: $0 [--uninstall]" >&2
    exit 2
fi

if [ ! -x "$here/novelgen" ] || [ ! -f "$here/share/applications/novelgen.desktop" ]; then
    echo "install.sh: run me from the unpacked NovelGen folder (novelgen and share/ beside me)" >&2
    exit 1
fi
# The Exec line is written quoted; these characters would need escaping rules of their own.
case "$here" in
    *[\"\`\$\\%\&\|]*)
        echo "install.sh: the folder's path $here contains one of \" \` \$ \\ % & |;" \
            "move the folder to a plainer path and run me again" >&2
        exit 1
        ;;
esac

mkdir -p "$apps" "$bin" "$icons/scalable/apps"
for size in "${sizes[@]}"; do
    mkdir -p "$icons/$size/apps"
    cp "$here/share/icons/hicolor/$size/apps/novelgen.png" "$icons/$size/apps/novelgen.png"
done
cp "$here/share/icons/hicolor/scalable/apps/novelgen.svg" "$icons/scalable/apps/novelgen.svg"
# The shipped entry says Exec=novelgen; the installed one names this folder's binary, so it
# works whether or not ~/.local/bin is on the desktop session's PATH.
sed -e "s|^Exec=.*|Exec=\"$here/novelgen\"|" -e "s|^TryExec=.*|TryExec=$here/novelgen|" \
    "$here/share/applications/novelgen.desktop" >"$apps/novelgen.desktop.tmp"
mv "$apps/novelgen.desktop.tmp" "$apps/novelgen.desktop"
ln -sfn "$here/novelgen" "$bin/novelgen"
refresh

echo "installed: $apps/novelgen.desktop (menu: NovelGen Desktop), icons in $icons,"
echo "  command $bin/novelgen -> $here/novelgen"
case ":$PATH:" in
    *":$bin:"*) ;;
    *) echo "  note: $bin is not on your PATH; add it, or run $here/novelgen" ;;
esac
