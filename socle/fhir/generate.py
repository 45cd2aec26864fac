#!/usr/bin/env python3
"""Write socle/fhir/hapi_properties.json: the configuration property names of the pinned HAPI FHIR server image.

The names are read from the published sources of that image, never typed by hand:
  * the starter's AppProperties (prefix `hapi.fhir`, Spring binds each setter/getter-backed field) and its nested
    classes, at the git tag that builds the image (`image/vX.Y.Z-N` publishes docker.io/hapiproject/hapi:vX.Y.Z-N,
    .github/workflows/build-images.yaml `type=match,pattern=image/(.*)`);
  * the starter's ExtendedPackageInstallationSpec and HAPI's PackageInstallationSpec (each entry of
    `hapi.fhir.implementationguides`), the latter from the hapi-fhir-jpaserver-base jar of the same HAPI version
    (its setters, listed by `javap`);
  * the key paths the starter's own application.yaml sets at that tag (Spring Boot, Hibernate and management keys).
Only names are stored, with the tag, the commit and each source's git blob SHA (or the jar's SHA-256).

    python socle/fhir/generate.py --starter /work/.mirror/hapifhir+hapi-fhir-jpaserver-starter/repo \\
        --tag image/v8.8.0-1 --jpaserver-jar ~/.cache/socle/m2/ca/uhn/hapi/fhir/hapi-fhir-jpaserver-base/8.8.0/hapi-fhir-jpaserver-base-8.8.0.jar
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

APP = "src/main/java/ca/uhn/fhir/jpa/starter/AppProperties.java"
EXT_SPEC = "src/main/java/ca/uhn/fhir/jpa/starter/ig/ExtendedPackageInstallationSpec.java"
APP_YAML = "src/main/resources/application.yaml"
POM = "pom.xml"
OUT = Path(__file__).resolve().with_name("hapi_properties.json")

CLASS = re.compile(r"^(\t*)public (?:static )?class (\w+)")
FIELD = re.compile(r"^(\t+)private\s+(?!static\b)(?:final\s+)?([\w.]+(?:<[\w.<>, ?]+>)?(?:\[\])?)\s+(\w+)\s*(?:=|;)")
SETTER = re.compile(r"\bpublic [\w.$<>\[\], ]+ set(\w+)\([\w.$<>\[\], ]+\);")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(repo), *args], check=True, capture_output=True, text=True).stdout


def java_classes(source: str) -> dict[str, list[tuple[str, str]]]:
    """Fields (type, name) of each class of a Java file, by class name; only fields with a getter or setter
    (Spring binds bean properties, not bare fields)."""
    classes: dict[str, list[tuple[str, str]]] = {}
    stack: list[tuple[int, str]] = []
    for line in source.splitlines():
        if m := CLASS.match(line):
            depth = len(m.group(1))
            stack = [s for s in stack if s[0] < depth] + [(depth, m.group(2))]
            classes.setdefault(m.group(2), [])
            continue
        if (m := FIELD.match(line)) and stack:
            depth = len(m.group(1))
            owner = [name for d, name in stack if d == depth - 1]
            if owner:
                classes[owner[-1]].append((m.group(2), m.group(3)))
    # The property is the accessor's name (Spring binds getters/setters): getCustomInterceptorClasses backs the field
    # custom_interceptor_classes and is bound as customInterceptorClasses (custom-interceptor-classes).
    accessors = {_norm(a): a for a in re.findall(r"\b(?:get|set|is)(\w+)\(", source)}
    return {cls: [(t, accessors[_norm(n)][:1].lower() + accessors[_norm(n)][1:]) for t, n in fields if _norm(n) in accessors]
            for cls, fields in classes.items()}


def _norm(name: str) -> str:
    return name.replace("_", "").lower()


def package_spec_setters(jar: Path) -> list[str]:
    out = subprocess.run(["javap", "-p", "-cp", str(jar), "ca.uhn.fhir.jpa.packages.PackageInstallationSpec"],
                         check=True, capture_output=True, text=True).stdout
    return sorted({m[:1].lower() + m[1:] for m in SETTER.findall(out)})


def app_properties(classes: dict[str, list[tuple[str, str]]], spec_fields: list[str]) -> list[str]:
    names: list[str] = []

    def walk(cls: str, prefix: str) -> None:
        for typ, name in classes.get(cls, []):
            path = f"{prefix}.{name}"
            names.append(path)
            generic = re.fullmatch(r"Map<String,\s*([\w.]+)>", typ)
            inner = generic.group(1) if generic else typ
            if generic:
                path += ".*"
                names.append(path)
            if inner in classes and inner != cls:
                walk(inner, path)
            elif inner.endswith("PackageInstallationSpec"):
                names.extend(f"{path}.{f}" for f in spec_fields)

    walk("AppProperties", "hapi.fhir")
    return names


def yaml_paths(doc: object, prefix: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            out.append(path)
            out.extend(yaml_paths(v, path))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--starter", type=Path, required=True, help="git directory of hapifhir/hapi-fhir-jpaserver-starter")
    ap.add_argument("--tag", required=True, help="image tag, e.g. image/v8.8.0-1")
    ap.add_argument("--jpaserver-jar", type=Path, required=True, help="hapi-fhir-jpaserver-base jar of the same HAPI version")
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)

    commit = git(a.starter, "rev-list", "-n", "1", a.tag).strip()
    blob = {p: git(a.starter, "rev-parse", f"{commit}:{p}").strip() for p in (APP, EXT_SPEC, APP_YAML, POM)}
    pom = git(a.starter, "show", f"{commit}:{POM}")
    hapi_version = re.search(r"<parent>.*?<artifactId>hapi-fhir</artifactId>\s*<version>([^<]+)</version>", pom, re.S).group(1)
    if hapi_version not in a.jpaserver_jar.name:
        sys.exit(f"{a.jpaserver_jar.name} is not HAPI {hapi_version}, the version the tag builds")

    classes = java_classes(git(a.starter, "show", f"{commit}:{APP}"))
    ext = [n for _, n in java_classes(git(a.starter, "show", f"{commit}:{EXT_SPEC}")).get("ExtendedPackageInstallationSpec", [])]
    spec_fields = sorted(set(package_spec_setters(a.jpaserver_jar)) | set(ext))
    names = app_properties(classes, spec_fields)
    names += yaml_paths(yaml.safe_load(git(a.starter, "show", f"{commit}:{APP_YAML}")))

    data = {
        "comment": "Generated by socle/fhir/generate.py from the HAPI FHIR JPA starter sources at `tag`: "
                   "configuration property names only. Do not edit by hand.",
        "tag": a.tag,
        "commit": commit,
        "image": "docker.io/hapiproject/hapi:" + a.tag.removeprefix("image/"),
        "hapi_version": hapi_version,
        "sources": {**{p: {"git_blob": s} for p, s in blob.items()},
                    a.jpaserver_jar.name: {"sha256": hashlib.sha256(a.jpaserver_jar.read_bytes()).hexdigest(),
                                           "class": "ca.uhn.fhir.jpa.packages.PackageInstallationSpec"}},
        "properties": sorted(set(names)),
    }
    a.out.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{a.out}: {len(data['properties'])} names from {a.tag} ({commit[:12]}, HAPI {hapi_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
