# EnvFileDiff: compare the planned content of an env file (stdin) with the file, on the host.
# $1: the env file. stdin: the planned content, as env-file-write.sh takes it ("@@KEEP@@KEY" keeps
# the host's line of KEY, "@@DERIVE@@KEY" is rebuilt). Prints "changed KEY" for every key whose line
# would change, appear or go, then "same" when the file would stay byte for byte, else "differs".
# Only key names leave the host: no value, no digest. stdin is read whole in every case, so that the
# SSH channel never closes under its writer.
f=$1
if [ ! -f "$f" ]; then
    cat >/dev/null
    echo missing
    exit 0
fi
if [ ! -r "$f" ]; then
    cat >/dev/null
    echo unreadable
    exit 0
fi
awk -v current="$f" '
    function key_of(line) {
        return match(line, /^[A-Za-z_][A-Za-z0-9_]*=/) ? substr(line, 1, RLENGTH - 1) : ""
    }
    BEGIN {
        n = 0
        while ((getline line < current) > 0) {
            old[++n] = line
            k = key_of(line)
            if (k != "") { on_host[k] = line }
        }
    }
    {
        line = $0
        if (line ~ /^@@KEEP@@/) {
            k = substr(line, 9); planned[k] = 1
            if (!(k in on_host)) { changed[k] = 1; line = "@@MISSING@@" } else { line = on_host[k] }
        } else if (line ~ /^@@DERIVE@@/) {
            k = substr(line, 11); planned[k] = 1; changed[k] = 1; line = "@@DERIVE@@"
        } else {
            k = key_of(line)
            if (k != "") { planned[k] = 1; if (!(k in on_host) || on_host[k] != line) { changed[k] = 1 } }
        }
        new[++m] = line
    }
    END {
        for (k in on_host) { if (!(k in planned)) { changed[k] = 1 } }
        same = (m == n)
        for (i = 1; same && i <= m; i++) { if (new[i] != old[i]) { same = 0 } }
        for (k in changed) { print "changed " k }
        print (same ? "same" : "differs")
    }
'
