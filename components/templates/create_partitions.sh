#!/bin/sh
# Rendered by socle — creates the FHIR store's tenant partitions (regional platform), once each: a partition that
# exists (read by its id) is left as it is. Every request body is a file of this ConfigMap, written by the kit's JSON
# serialiser; FHIR_BASE comes from the pod's environment. Retried by the Job until the server answers.
set -eu
fail=0
for body in /etc/socle/partitions/partition-*.json; do
    id=${body##*/partition-}
    id=${id%.json}
    case "$id" in *[!0-9]*|'') echo "socle: $body: not a partition file" >&2; exit 2 ;; esac
    if wget -q -O /dev/null --header 'Content-Type: application/fhir+json' \
        --post-data "{\"resourceType\":\"Parameters\",\"parameter\":[{\"name\":\"id\",\"valueInteger\":$id}]}" \
        "$FHIR_BASE/DEFAULT/\$partition-management-read-partition"; then
        echo "socle: partition $id exists"
        continue
    fi
    if wget -q -O /dev/null --header 'Content-Type: application/fhir+json' --post-file "$body" \
        "$FHIR_BASE/DEFAULT/\$partition-management-create-partition"; then
        echo "socle: partition $id created"
    else
        echo "socle: partition $id could not be created" >&2
        fail=1
    fi
done
exit "$fail"
