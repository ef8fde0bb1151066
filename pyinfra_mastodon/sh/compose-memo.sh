# ComposeMemo: after Compose's own dry run found every service of the project up to date, keep the
# digest of what it compared (compose-key.sh) in $2 (root only), so that the next run can tell
# "nothing changed" without a dry run (converged.sh). $1: the project folder.
# stdin: the dry run's "DRY-RUN MODE" lines. They are printed again, for the caller.
plan=$(cat)
[ -n "$plan" ] && printf '%s\n' "$plan"
# As ComposeUpPlan reads it: a container's first action is the decision (Waiting, Healthy... follow).
if [ -n "$plan" ] && printf '%s\n' "$plan" | awk -v prefix="$MASTODON_PROJECT-" '
        match($0, /Container [^ ]+ +[^ ]+ *$/) {
            n = split(substr($0, RSTART), w, / +/)
            if (index(w[2], prefix) == 1 && !(w[2] in seen)) { seen[w[2]] = 1; if (w[3] != "Running") { stale = 1 } }
        }
        END { exit stale ? 1 : 0 }'; then
    umask 077
    mkdir -p "$(dirname "$2")"
    key=$(compose_key "$1")
    printf '%s\n' "$key" >"$2.tmp" && mv "$2.tmp" "$2"
else
    rm -f "$2"
fi
