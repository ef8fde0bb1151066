# BackupInfo: what restoring backup $2 of $1 ("latest": the newest) would replace, for the restore's
# plan and --dry. Prints "name NAME", the manifest's created/mastodon_version/database_bytes lines,
# "file NAME SIZE" per file, and "same FILE yes|no" for each env file against the instance's in $3.
# Never a checksum of an env file nor any content: the comparison is made here.
root=$1 name=$2 base=$3
# The glob sorts by name, so by time: the last backup folder is the newest.
if [ "$name" = latest ]; then
    name=''
    for d in "$root"/[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9]Z; do
        if [ -d "$d" ]; then name=${d##*/}; fi
    done
fi
dir=$root/$name
[ -n "$name" ] && [ -f "$dir/manifest" ] || exit 0
echo "name $name"
grep -E '^(created|mastodon_version|database_bytes) ' "$dir/manifest"
awk '$1 == "file" { print "file " $2 " " $3 }' "$dir/manifest"
for f in env.production env.db; do
    if cmp -s "$dir/$f" "$base/.$f"; then echo "same $f yes"; else echo "same $f no"; fi
done
