# EnvFileKeys: the owner and mode of an env file and which keys it has, never a value.
# $1: the env file. Prints "meta MODE USER GROUP", then "key NAME set" or "key NAME empty" per
# KEY=... line (empty: nothing, "" or '' after the "="), or "unreadable"; nothing if it is missing.
f=$1
if [ -f "$f" ]; then
    echo "meta $(stat -L -c '%a %U %G' "$f")"
    if [ -r "$f" ]; then
        # Only names of plain identifiers leave the host; values stay in awk.
        awk 'match($0, /^[A-Za-z_][A-Za-z0-9_]*=/) {
                 k = substr($0, 1, RLENGTH - 1); v = substr($0, RLENGTH + 1)
                 print "key " k " " ((v == "" || v == "\"\"" || v == "\047\047") ? "empty" : "set")
             }' "$f"
    else
        echo unreadable
    fi
fi
