"""The model registry on disk: `<root>/<name>/<version>/{weights.safetensors, card.json}` plus aliases.

No torch here, so the API can list and promote models without loading them. A reference is
`name`, `name@v3` or `name@production`; a bare name resolves to the `production` alias when it
exists, else to the newest version.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from models.card import ModelCard
from models.errors import ModelNotFoundError

WEIGHTS_FILE = "weights.safetensors"
CARD_FILE = "card.json"
ALIASES_FILE = "aliases.json"
DEFAULT_ALIAS = "production"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_VERSION_RE = re.compile(r"^v(\d+)$")


def check_name(kind: str, value: str) -> str:
    """Names become directory names: allow only a safe alphabet so no reference can escape the root."""
    if not _NAME_RE.match(value):
        msg = f"invalid {kind} {value!r}: use 1-64 of a-z, 0-9, '_', '-', '.', starting with a letter or digit"
        raise ValueError(msg)
    return value


@dataclass(frozen=True)
class ModelRef:
    name: str
    selector: str | None  # a version (v3), an alias (production) or None

    @classmethod
    def parse(cls, ref: str) -> ModelRef:
        name, at, selector = ref.partition("@")
        check_name("model name", name)
        if at:  # `name@` names no version: refused rather than read as `name`
            check_name("version or alias after '@'", selector)
        return cls(name, selector or None)

    def __str__(self) -> str:
        return f"{self.name}@{self.selector}" if self.selector else self.name


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_FILE

    def card(self) -> ModelCard:
        return ModelCard.model_validate_json((self.path / CARD_FILE).read_text())


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class ModelStore:
    """A directory of versioned models. Safe for several processes: versions are created with mkdir."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.match(p.name))

    def versions(self, name: str) -> list[ModelVersion]:
        folder = self.root / check_name("model name", name)
        if not folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))]
        return [ModelVersion(name, p.name, p) for _, p in sorted(found) if (p / CARD_FILE).is_file()]

    def aliases(self, name: str) -> dict[str, str]:
        path = self.root / check_name("model name", name) / ALIASES_FILE
        if not path.is_file():
            return {}
        data = json.loads(path.read_text())
        return {str(k): str(v) for k, v in data.items()}

    def resolve(self, ref: str | ModelRef) -> ModelVersion:
        parsed = ModelRef.parse(ref) if isinstance(ref, str) else ref
        versions = {v.version: v for v in self.versions(parsed.name)}
        if not versions:
            known = ", ".join(self.names()) or "none (train one with `vigil train`)"
            # no path here: this message reaches API clients, who have no business knowing the server's folders
            msg = f"no model named {parsed.name!r} in the registry (VIGIL_STORE__ROOT); models: {known}"
            raise ModelNotFoundError(msg)
        aliases = self.aliases(parsed.name)
        selector = parsed.selector
        if selector is None:
            selector = aliases.get(DEFAULT_ALIAS, list(versions)[-1])
        selector = aliases.get(selector, selector)
        if selector not in versions:
            choices = ", ".join([*versions, *aliases])
            msg = f"model {parsed.name!r} has no version or alias {parsed.selector!r}; choices: {choices}"
            raise ModelNotFoundError(msg)
        return versions[selector]

    def create_version(self, name: str) -> ModelVersion:
        """Reserve the next version directory (v1, v2, ...); mkdir makes the reservation atomic."""
        folder = self.root / check_name("model name", name)
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            taken = [int(m.group(1)) for p in folder.iterdir() if (m := _VERSION_RE.match(p.name))]
            version = f"v{max(taken, default=0) + 1}"
            try:
                (folder / version).mkdir()
            except FileExistsError:
                continue
            return ModelVersion(name, version, folder / version)

    def write_card(self, version: ModelVersion, card: ModelCard) -> None:
        card = card.model_copy(update={"name": version.name, "version": version.version})
        _atomic_write(version.path / CARD_FILE, card.model_dump_json(indent=2))

    def promote(self, ref: str, alias: str = DEFAULT_ALIAS) -> ModelVersion:
        """Point `alias` at the version `ref` resolves to; workers following the alias reload."""
        check_name("alias", alias)
        if _VERSION_RE.match(alias):
            msg = f"alias {alias!r} looks like a version; pick a name such as 'production' or 'staging'"
            raise ValueError(msg)
        target = self.resolve(ref)
        aliases = self.aliases(target.name)
        aliases[alias] = target.version
        _atomic_write(self.root / target.name / ALIASES_FILE, json.dumps(aliases, indent=2, sort_keys=True))
        return target
