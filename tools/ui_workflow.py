"""Convert between ComfyUI's two workflow formats, driven by a server's ``/object_info``.

The editor saves *UI* workflows (nodes with positions, links, positional ``widgets_values``);
only *API* prompts (``{id: {class_type, inputs}}``) execute. The pack keeps both for every graph
in ``workflows/`` (UI, listed by ComfyUI as templates) and ``workflows/api/`` (API, for headless
use). This module turns an API prompt into an editor graph (``tools/make_workflows.py``), an
editor graph back into the prompt the editor would queue (the twin check in the tests), and
checks a prompt against ``/object_info`` the way ComfyUI's validator does, for graphs whose
weights are not here (SD 1.5, SDXL).
"""

from __future__ import annotations

from typing import Any

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
VIRTUAL_NODES = {"Note", "MarkdownNote"}  # editor-only: never part of a prompt
SEED_NAMES = {"seed", "noise_seed"}  # the frontends add a "control after generate" widget to these
FILENAME_INPUTS = {("CheckpointLoaderSimple", "ckpt_name"), ("LoadImage", "image"), ("UNETLoader", "unet_name"),
                   ("DualCLIPLoader", "clip_name1"), ("DualCLIPLoader", "clip_name2"), ("VAELoader", "vae_name"),
                   ("CLIPLoader", "clip_name")}

ObjectInfo = dict[str, dict[str, Any]]


# -- reading /object_info ---------------------------------------------------------------------
def input_specs(info: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any], bool]]:
    """``(name, type, options, required)`` for every input of a node, in the editor's order."""
    inputs = info.get("input", {})
    order = info.get("input_order") or {section: list(inputs.get(section, {})) for section in ("required", "optional")}
    specs = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = inputs[section][name]
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            specs.append((name, spec[0], options, section == "required"))
    return specs


def is_widget(kind: Any, options: dict[str, Any]) -> bool:
    """A value typed in the node (a widget), as opposed to a socket fed by a link."""
    return (isinstance(kind, list) or kind in WIDGET_TYPES) and not options.get("forceInput")


def combo_choices(kind: Any, options: dict[str, Any]) -> list[Any] | None:
    if isinstance(kind, list):
        return kind
    if kind == "COMBO":
        return options.get("options", [])
    return None


def extra_widget_values(name: str, kind: Any, options: dict[str, Any]) -> int:
    """How many hidden values the editor stores after this widget in ``widgets_values``.

    Both frontends add a "control after generate" combo after INT inputs named seed/noise_seed (or
    flagged ``control_after_generate``), and an upload button after an ``image_upload`` combo.
    """
    if kind == "INT" and (name in SEED_NAMES or options.get("control_after_generate")):
        return 1
    if combo_choices(kind, options) is not None and (options.get("control_after_generate")
                                                     or options.get("image_upload")):
        return 1
    return 0


def widget_inputs(info: dict[str, Any]) -> list[tuple[str, Any, dict[str, Any]]]:
    return [(name, kind, options) for name, kind, options, _ in input_specs(info) if is_widget(kind, options)]


def socket_inputs(info: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    return [(name, kind, required) for name, kind, options, required in input_specs(info)
            if not is_widget(kind, options)]


# -- UI -> API ----------------------------------------------------------------------------------
def ui_to_api(ui: dict[str, Any], object_info: ObjectInfo) -> dict[str, dict[str, Any]]:
    """The prompt the editor queues for this graph: ``app.graphToPrompt().output`` on every input
    the nodes define (see :func:`split_undefined_inputs`); muted nodes and notes are left out."""
    links = {link[0]: link for link in ui.get("links", [])}
    prompt: dict[str, dict[str, Any]] = {}
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL_NODES or node.get("mode", 0) != 0:
            continue
        info = object_info[node["type"]]
        inputs: dict[str, Any] = {}
        values = list(node.get("widgets_values") or [])
        widgets = widget_inputs(info)
        expected = sum(1 + extra_widget_values(name, kind, options) for name, kind, options in widgets)
        if len(values) != expected:
            raise ValueError(f"node {node['id']} ({node['type']}) stores {len(values)} widget values but the "
                             f"server's definition has {expected}: the graph was made for another version")
        position = 0
        for name, kind, options in widgets:
            inputs[name] = values[position]
            position += 1 + extra_widget_values(name, kind, options)
        for slot in node.get("inputs") or []:
            link = links.get(slot.get("link"))
            if link is not None:
                inputs[slot["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"inputs": inputs, "class_type": node["type"]}
    return prompt


def split_undefined_inputs(prompt: dict[str, dict[str, Any]], object_info: ObjectInfo
                           ) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str]]]:
    """Each node's class_type and the inputs it defines, and the (class, input) pairs that were cut.

    ComfyUI executes only those: it ignores the rest, such as the 2024 editor's LoadImage ``upload``
    (its upload button's value) and the current editor's ``_meta`` titles.
    """
    kept: dict[str, dict[str, Any]] = {}
    dropped: set[tuple[str, str]] = set()
    for node_id, entry in prompt.items():
        defined = {name for name, *_ in input_specs(object_info[entry["class_type"]])}
        dropped |= {(entry["class_type"], name) for name in entry["inputs"] if name not in defined}
        kept[node_id] = {"class_type": entry["class_type"],
                         "inputs": {k: v for k, v in entry["inputs"].items() if k in defined}}
    return kept, dropped


# -- API -> UI ----------------------------------------------------------------------------------
def control_value(name: str, kind: Any, options: dict[str, Any]) -> str:
    """The hidden value stored after a widget: "fixed" for seeds (the same run every time)."""
    return "image" if options.get("image_upload") else "fixed"


def api_to_ui(prompt: dict[str, dict[str, Any]], object_info: ObjectInfo,
              positions: dict[str, tuple[float, float]] | None = None,
              sizes: dict[str, tuple[float, float]] | None = None,
              notes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """An editor graph (litegraph format 0.4, as the 2024 editor saves it) for an API prompt."""
    positions, sizes = positions or {}, sizes or {}
    nodes: dict[str, dict[str, Any]] = {}
    links: list[list[Any]] = []
    for order, (node_id, entry) in enumerate(sorted(prompt.items(), key=lambda item: int(item[0]))):
        info = object_info[entry["class_type"]]
        values: list[Any] = []
        for name, kind, options in widget_inputs(info):
            if name not in entry["inputs"]:
                raise ValueError(f"node {node_id} ({entry['class_type']}) has no value for its widget {name!r}: "
                                 "the editor would send one, so the API file must hold it")
            values.append(entry["inputs"][name])
            values += [control_value(name, kind, options)] * extra_widget_values(name, kind, options)
        node: dict[str, Any] = {
            "id": int(node_id), "type": entry["class_type"], "pos": list(positions.get(node_id, (0, 0))),
            "size": list(sizes.get(node_id, (315, 100))), "flags": {}, "order": order, "mode": 0,
            "inputs": [{"name": name, "type": kind, "link": None} for name, kind, _ in socket_inputs(info)],
            "outputs": [{"name": name, "type": kind, "links": [], "slot_index": slot}
                        for slot, (name, kind) in enumerate(zip(info["output_name"], info["output"], strict=True))],
            "properties": {"Node name for S&R": entry["class_type"]},
            "widgets_values": values,
        }
        if not node["inputs"]:
            del node["inputs"]
        nodes[node_id] = node
    for node_id, entry in sorted(prompt.items(), key=lambda item: int(item[0])):
        for slot in nodes[node_id].get("inputs", []):
            source = entry["inputs"].get(slot["name"])
            if not isinstance(source, list):
                continue
            link_id = len(links) + 1
            origin, origin_slot = source
            links.append([link_id, int(origin), origin_slot, int(node_id), nodes[node_id]["inputs"].index(slot),
                          slot["type"]])
            slot["link"] = link_id
            nodes[origin]["outputs"][origin_slot]["links"].append(link_id)
    for output in (out for node in nodes.values() for out in node["outputs"]):
        if not output["links"]:
            output["links"] = None
    all_nodes = list(nodes.values())
    for number, note in enumerate(notes or [], start=1):
        all_nodes.append({"id": 1000 + number, "type": "Note", "pos": list(note["pos"]), "size": list(note["size"]),
                          "flags": {}, "order": len(all_nodes), "mode": 0, "properties": {"text": ""},
                          "widgets_values": [note["text"]], "color": "#432", "bgcolor": "#653"})
    return {"last_node_id": max(node["id"] for node in all_nodes), "last_link_id": len(links), "nodes": all_nodes,
            "links": links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def nodes_of(prompt: dict[str, dict[str, Any]], class_type: str) -> list[str]:
    """The ids of an API prompt's nodes of ``class_type``, in the prompt's order."""
    return [key for key, node in prompt.items() if node["class_type"] == class_type]


def columns(prompt: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Left-to-right layout: each node one column right of its deepest input."""
    depth: dict[str, int] = {}

    def visit(node_id: str) -> int:
        if node_id not in depth:
            sources = [value[0] for value in prompt[node_id]["inputs"].values() if isinstance(value, list)]
            depth[node_id] = 1 + max((visit(source) for source in sources), default=-1)
        return depth[node_id]

    for node_id in prompt:
        visit(node_id)
    return depth


# -- validation against /object_info ------------------------------------------------------------
def _check_value(where: str, value: Any, kind: Any, options: dict[str, Any]) -> list[str]:
    choices = combo_choices(kind, options)
    if choices is not None:
        return [] if value in choices else [f"{where}: {value!r} is not one of {choices}"]
    if kind == "BOOLEAN":
        return [] if isinstance(value, bool) else [f"{where}: {value!r} is not a BOOLEAN"]
    if kind == "STRING":
        return [] if isinstance(value, str) else [f"{where}: {value!r} is not a STRING"]
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, int if kind == "INT" else (int, float)):
            return [f"{where}: {value!r} is not an {kind}"]
        low, high = options.get("min", float("-inf")), options.get("max", float("inf"))
        return [] if low <= value <= high else [f"{where}: {value} is outside [{low}, {high}]"]
    return [f"{where}: a value was given for the {kind} socket"]


def validate_prompt(prompt: dict[str, dict[str, Any]], object_info: ObjectInfo,
                    skip_values: set[tuple[str, str]] = FILENAME_INPUTS) -> list[str]:
    """Every problem ComfyUI's validator would report, except the ``skip_values`` (class, input)
    whose choices depend on the files present (checkpoints, input images). Empty = valid."""
    problems: list[str] = []
    for node_id, entry in prompt.items():
        class_type = entry.get("class_type")
        if class_type not in object_info:
            problems.append(f"node {node_id}: unknown node type {class_type!r}")
            continue
        specs = {name: (kind, options, required)
                 for name, kind, options, required in input_specs(object_info[class_type])}
        given = entry.get("inputs", {})
        problems += [f"node {node_id} ({class_type}): unknown input {name!r}" for name in given if name not in specs]
        for name, (kind, options, required) in specs.items():
            where = f"node {node_id} ({class_type}).{name}"
            if name not in given:
                if required:
                    problems.append(f"{where}: required input missing")
                continue
            value = given[name]
            if isinstance(value, list) and len(value) == 2 and isinstance(value[0], str):
                problems += _check_link(where, value, kind, prompt, object_info)
            elif is_widget(kind, options):
                if (class_type, name) not in skip_values:
                    problems += _check_value(where, value, kind, options)
            else:
                problems.append(f"{where}: the {kind} socket needs a link, got {value!r}")
    return problems


def _check_link(where: str, link: list[Any], kind: Any, prompt: dict[str, dict[str, Any]],
                object_info: ObjectInfo) -> list[str]:
    source_id, slot = link
    source = prompt.get(source_id)
    if source is None or source.get("class_type") not in object_info:
        return [f"{where}: links to missing node {source_id}"]
    outputs = object_info[source["class_type"]]["output"]
    if not 0 <= slot < len(outputs):
        return [f"{where}: node {source_id} has no output {slot}"]
    wanted = "COMBO" if isinstance(kind, list) else kind
    produced = "COMBO" if isinstance(outputs[slot], list) else outputs[slot]
    if "*" in (wanted, produced) or wanted == produced:
        return []
    return [f"{where}: expects {wanted}, node {source_id} output {slot} gives {produced}"]
