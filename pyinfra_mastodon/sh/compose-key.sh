# ComposeKey: one digest of everything `docker compose up` compares for the project, to tell that
# nothing changed since Compose's own dry run last found every service up to date. $1: the project
# folder. Prints the digest. It is made from the env files' contents, so it stays on the host: it is
# written to, and compared with, a root-only file (compose-memo.sh, converged.sh), never printed.
# In it: Compose's plugin binary; the compose file and every .env* file of the folder; per container of
# the project its name, id, state, config-hash label and image id, and the id its image reference
# has now (a new image pulled under the same tag changes it).
{
    # Compose's version, without starting it: the plugin binaries where the docker CLI looks for them.
    stat -L -c '%n %s %Y' /usr/local/lib/docker/cli-plugins/docker-compose /usr/local/libexec/docker/cli-plugins/docker-compose \
        /usr/lib/docker/cli-plugins/docker-compose /usr/libexec/docker/cli-plugins/docker-compose \
        "$HOME/.docker/cli-plugins/docker-compose" 2>/dev/null
    for f in "${1%/}/docker-compose.yml" "${1%/}"/.env*; do
        [ -f "$f" ] && printf '%s %s\n' "$f" "$(sha256sum <"$f" | cut -d' ' -f1)"
    done
    ids=$(docker ps -aq --filter "label=com.docker.compose.project=$MASTODON_PROJECT" \
        --filter label=com.docker.compose.oneoff=False 2>/dev/null)
    if [ -n "$ids" ]; then
        # shellcheck disable=SC2086 # one word per id
        containers=$(docker inspect --format '{{.Name}} {{.Id}} {{.State.Status}} {{index .Config.Labels "com.docker.compose.config-hash"}} {{.Image}} {{.Config.Image}}' $ids 2>/dev/null | sort)
        printf '%s\n' "$containers"
        # One call for every image reference; a missing image changes the output as much as a new one.
        # shellcheck disable=SC2046 # one word per reference
        docker image inspect --format '{{.Id}} {{.RepoTags}}' $(printf '%s\n' "$containers" | awk '{ print $6 }' | sort -u) 2>/dev/null
    fi
} | sha256sum | cut -d' ' -f1
