# adopt_upstream_data: move a PostgreSQL data directory laid out as upstream's compose file leaves it
# (PG_VERSION directly in $1) one level down, into $1/pgdata, where this deploy keeps it (0700).
# Safe to run again after an interruption: what was moved stays moved.
set -e
cd "$1"
mkdir -p pgdata
find . -mindepth 1 -maxdepth 1 ! -name pgdata -exec mv {} pgdata/ \;
chmod 700 pgdata
echo "moved the PostgreSQL data of $1 into $1/pgdata"
