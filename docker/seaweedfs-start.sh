#!/bin/sh
# Entry point of docker-compose.yml's `s3` service (SeaweedFS): refuses to start while a secret is unset or still
# an .env.example placeholder, renders the S3 identities of docker/s3.json (its ${VAR} placeholders) from the
# environment into a file only this user can read, then runs the given command (the image's own entrypoint).
#   S3_CONFIG_TEMPLATE  the identities template (default /etc/seaweedfs/s3.json, mounted read-only)
#   S3_CONFIG           where the rendered file goes (default /tmp/seaweedfs/s3.json: pass it as -s3.config)
# The JWT keys of docker/security.toml come from WEED_JWT_* variables, which SeaweedFS reads itself; they are
# checked here too. POSIX sh and awk (the image has busybox), no other tools.
set -eu

template=${S3_CONFIG_TEMPLATE:-/etc/seaweedfs/s3.json}
rendered=${S3_CONFIG:-/tmp/seaweedfs/s3.json}

refuse() {
    echo "seaweedfs-start: $1; set it in .env (see .env.example)" >&2
    exit 1
}

for name in WEED_JWT_SIGNING_KEY WEED_JWT_FILER_SIGNING_KEY WEED_JWT_FILER_SIGNING_READ_KEY; do
    eval "value=\${$name:-}"
    [ -n "$value" ] || refuse "$name is unset"
    case "$value" in change-me*) refuse "$name is still the .env.example placeholder" ;; esac
done

umask 077
mkdir -p "$(dirname "$rendered")"
rm -f "$rendered"
# Each ${NAME} becomes the variable's value; a value that is unset, a placeholder, or would break the JSON
# (a quote, a backslash) stops the start.
if ! awk '
    {
        line = $0
        out = ""
        while (match(line, /\$\{[A-Za-z_][A-Za-z0-9_]*\}/)) {
            name = substr(line, RSTART + 2, RLENGTH - 3)
            value = ENVIRON[name]
            if (value == "") {
                print "seaweedfs-start: " name " is unset; set it in .env (see .env.example)" > "/dev/stderr"
                failed = 1
            } else if (index(value, "change-me") == 1) {
                print "seaweedfs-start: " name " is still the .env.example placeholder; set it in .env" > "/dev/stderr"
                failed = 1
            } else if (index(value, "\"") || index(value, "\\")) {
                print "seaweedfs-start: " name " must not contain a quote or a backslash (use openssl rand -hex)" > "/dev/stderr"
                failed = 1
            }
            out = out substr(line, 1, RSTART - 1) value
            line = substr(line, RSTART + RLENGTH)
        }
        print out line
    }
    END { exit failed }
' "$template" >"$rendered.tmp"; then
    rm -f "$rendered.tmp"
    exit 1
fi
mv "$rendered.tmp" "$rendered"

exec "$@"
