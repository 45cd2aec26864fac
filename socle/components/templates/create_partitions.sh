#!/bin/sh
# Rendered by socle — creates the FHIR store's tenant partitions (regional platform), once each: a partition that
# exists (read by its id) is left as it is; every outcome is also written to $SOCLE_LOG, forwarded to the audit log. Every request body is a file of this ConfigMap, written by the kit's JSON
# serialiser; FHIR_BASE comes from the pod's environment. Retried by the Job until the server answers.
set -eu
log=${SOCLE_LOG:-/dev/null}
say() { echo "socle: $*"; echo "socle: $*" >>"$log"; }
warn() { echo "socle: $*" >&2; echo "socle: $*" >>"$log"; }
fail=0
for body in /etc/socle/partitions/partition-*.json; do
    id=${body##*/partition-}
    id=${id%.json}
    case "$id" in *[!0-9]*|'') warn "$body: not a partition file"; exit 2 ;; esac
    if wget -q -O /dev/null --header 'Content-Type: application/fhir+json' \
        --post-data "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"id\",\"valueInteger\":$id}]}" \
        "$FHIR_BASE/DEFAULT/\$partition-management-read-partition"; then
        say "partition $id exists"
        continue
    fi
    if wget -q -O /dev/null --header 'Content-Type: application/fhir+json' --post-file "$body" \
        "$FHIR_BASE/DEFAULT/\$partition-management-create-partition"; then
        say "partition $id created"
    else
        warn "partition $id could not be created"
        fail=1
    fi
done
exit "$fail"
