"""Fails if any IAM statement in template.yaml allows a wildcard action or resource.

Least privilege here means exact actions on exact ARNs. Reads the template with the
CloudFormation short-form tags (!Ref, !Sub, ...) kept as opaque values.
"""
import sys

import yaml


class CfnLoader(yaml.SafeLoader):
    pass


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}


CfnLoader.add_multi_constructor("!", _tag)


def statements(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Statement":
                yield from unwrap(value if isinstance(value, list) else [value])
            else:
                yield from statements(value)
    elif isinstance(node, list):
        for item in node:
            yield from statements(item)


def unwrap(items):
    """Statements, with each `!If [condition, statement, otherwise]` read as its branches."""
    for item in items:
        if isinstance(item, dict) and set(item) == {"If"}:
            yield from unwrap(b for b in item["If"][1:] if isinstance(b, dict) and "Effect" in b)
        else:
            yield item


def as_list(value):
    return value if isinstance(value, list) else [value]


def main(path):
    with open(path) as f:
        template = yaml.load(f, Loader=CfnLoader)
    problems = []
    found = 0
    for statement in statements(template.get("Resources", {})):
        found += 1
        sid = statement.get("Sid", "?")
        for action in as_list(statement.get("Action", [])):
            if not isinstance(action, str) or "*" in action:
                problems.append(f"statement {sid}: wildcard or non-literal action {action!r}")
        for resource in as_list(statement.get("Resource", [])):
            if resource == "*" or (isinstance(resource, str) and resource.endswith(":*")):
                problems.append(f"statement {sid}: wildcard resource {resource!r}")
        if "NotAction" in statement or "NotResource" in statement:
            problems.append(f"statement {sid}: NotAction/NotResource is not least privilege")
    if found == 0:
        problems.append("no IAM statements found: the check would prove nothing")
    for problem in problems:
        print(f"error: {path}: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"IAM: {found} statements, no wildcard actions or resources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "template.yaml"))
