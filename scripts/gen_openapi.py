"""Generate the REST API's OpenAPI 3 document from the protos' google.api.http annotations.

    python scripts/gen_openapi.py                 # print the document (JSON)
    python scripts/gen_openapi.py --out FILE      # write it to FILE

Nothing here is written by hand per endpoint: the descriptor set that
`scripts/gen_protos.py --descriptor` builds (the same one Envoy's gRPC-JSON
transcoder reads, with source info) gives the routes, the path and query
parameters, the bodies and every description (the proto comments). The JSON shapes
follow what the transcoder prints: proto field names (snake_case), 64-bit integers
as strings, enums as their names, Timestamps as RFC 3339 strings; a
server-streaming method answers a JSON array of its messages, delivered as they come;
google.api.HttpBody answers are the raw bytes. The gateway serves the result at
/openapi.json (services/gateway/http.py), generated once per process.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

PUBLIC_PACKAGE = "slidelane.v1"
F = descriptor_pb2.FieldDescriptorProto

SCALARS: dict[int, dict[str, Any]] = {
    F.TYPE_DOUBLE: {"type": "number", "format": "double"},
    F.TYPE_FLOAT: {"type": "number", "format": "float"},
    F.TYPE_INT64: {"type": "string", "format": "int64"},
    F.TYPE_UINT64: {"type": "string", "format": "uint64"},
    F.TYPE_SINT64: {"type": "string", "format": "int64"},
    F.TYPE_FIXED64: {"type": "string", "format": "uint64"},
    F.TYPE_SFIXED64: {"type": "string", "format": "int64"},
    F.TYPE_INT32: {"type": "integer", "format": "int32"},
    F.TYPE_SINT32: {"type": "integer", "format": "int32"},
    F.TYPE_SFIXED32: {"type": "integer", "format": "int32"},
    F.TYPE_UINT32: {"type": "integer", "format": "int64", "minimum": 0},
    F.TYPE_FIXED32: {"type": "integer", "format": "int64", "minimum": 0},
    F.TYPE_BOOL: {"type": "boolean"},
    F.TYPE_STRING: {"type": "string"},
    F.TYPE_BYTES: {"type": "string", "format": "byte"},
}

# Well-known types have their own JSON mapping.
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "example": "1.5s"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.StringValue": {"type": "string", "nullable": True},
    "google.protobuf.BoolValue": {"type": "boolean", "nullable": True},
    "google.protobuf.Int32Value": {"type": "integer", "format": "int32", "nullable": True},
    "google.protobuf.Int64Value": {"type": "string", "format": "int64", "nullable": True},
    "google.protobuf.DoubleValue": {"type": "number", "format": "double", "nullable": True},
}
HTTP_BODY = "google.api.HttpBody"

# What each HttpBody-returning method answers (the transcoder passes the bytes through).
HTTP_BODY_MEDIA = {
    "GetSlideTile": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
    "GetJobResults": {
        "application/json": {"schema": {"type": "string", "format": "binary"}},
        "application/geo+json": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    },
}
_PARAM_RE = re.compile(r"\{([^}=]+)(?:=[^}]*)?\}")


def load_descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """Build the descriptor set exactly as the Envoy transcoder gets it, and read it."""
    import gen_protos  # scripts/gen_protos.py

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slidelane.pb"
        gen_protos.write_descriptor(path)
        return descriptor_pb2.FileDescriptorSet.FromString(path.read_bytes())


class Registry:
    """Messages, enums and comments of every file, by fully-qualified name."""

    def __init__(self, files: descriptor_pb2.FileDescriptorSet) -> None:
        self.messages: dict[str, descriptor_pb2.DescriptorProto] = {}
        self.enums: dict[str, descriptor_pb2.EnumDescriptorProto] = {}
        self.comments: dict[tuple[str, tuple[int, ...]], str] = {}
        self.paths: dict[str, tuple[str, tuple[int, ...]]] = {}  # full name -> (file, path)
        self.files = list(files.file)
        for file in self.files:
            for location in file.source_code_info.location:
                text = (location.leading_comments or location.trailing_comments).strip()
                if text:
                    self.comments[(file.name, tuple(location.path))] = " ".join(
                        line.strip() for line in text.splitlines() if not line.strip().startswith("buf:lint")
                    ).strip()
            for i, message in enumerate(file.message_type):
                self._add_message(file, f"{file.package}.{message.name}", message, (4, i))
            for i, enum in enumerate(file.enum_type):
                name = f"{file.package}.{enum.name}"
                self.enums[name] = enum
                self.paths[name] = (file.name, (5, i))

    def _add_message(self, file: descriptor_pb2.FileDescriptorProto, name: str, message, path: tuple[int, ...]) -> None:
        self.messages[name] = message
        self.paths[name] = (file.name, path)
        for i, nested in enumerate(message.nested_type):
            self._add_message(file, f"{name}.{nested.name}", nested, (*path, 3, i))
        for i, enum in enumerate(message.enum_type):
            self.enums[f"{name}.{enum.name}"] = enum
            self.paths[f"{name}.{enum.name}"] = (file.name, (*path, 4, i))

    def comment(self, file: str, path: tuple[int, ...]) -> str:
        return self.comments.get((file, path), "")

    def described(self, name: str) -> str:
        file, path = self.paths.get(name, ("", ()))
        return self.comment(file, path)

    def field_comment(self, message_name: str, index: int) -> str:
        file, path = self.paths[message_name]
        return self.comment(file, (*path, 2, index))


class Builder:
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.schemas: dict[str, dict[str, Any]] = {}

    def ref(self, type_name: str) -> dict[str, Any]:
        name = type_name.lstrip(".")
        if name in WELL_KNOWN:
            return dict(WELL_KNOWN[name])
        if name in self.registry.enums:
            self._enum_schema(name)
        else:
            self._message_schema(name)
        return {"$ref": f"#/components/schemas/{name}"}

    def _enum_schema(self, name: str) -> None:
        if name in self.schemas:
            return
        enum = self.registry.enums[name]
        self.schemas[name] = {
            "type": "string",
            "enum": [value.name for value in enum.value],
            "description": self.registry.described(name),
        }

    def _message_schema(self, name: str) -> None:
        if name in self.schemas:
            return
        message = self.registry.messages[name]
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        self.schemas[name] = schema  # registered first: messages may refer to themselves
        if description := self.registry.described(name):
            schema["description"] = description
        for index, field in enumerate(message.field):
            schema["properties"][field.name] = self.field_schema(name, index, field)

    def field_schema(self, message_name: str, index: int, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any]:
        if field.type in (F.TYPE_MESSAGE, F.TYPE_ENUM):
            inner = self._map_schema(field) or self.ref(field.type_name)
        else:
            inner = dict(SCALARS[field.type])
        repeated = field.label == F.LABEL_REPEATED and not self._is_map(field)
        schema = {"type": "array", "items": inner} if repeated else inner
        description = self.registry.field_comment(message_name, index)
        if description:
            # A $ref cannot carry siblings in OpenAPI 3.0: wrap it.
            schema = (
                {"allOf": [schema], "description": description} if "$ref" in schema else {**schema, "description": description}
            )
        return schema

    def _is_map(self, field: descriptor_pb2.FieldDescriptorProto) -> bool:
        entry = self.registry.messages.get(field.type_name.lstrip("."))
        return field.label == F.LABEL_REPEATED and entry is not None and entry.options.map_entry

    def _map_schema(self, field: descriptor_pb2.FieldDescriptorProto) -> dict[str, Any] | None:
        if not self._is_map(field):
            return None
        name = field.type_name.lstrip(".")
        value_field = self.registry.messages[name].field[1]
        return {"type": "object", "additionalProperties": self.field_schema(name, 1, value_field)}

    def scalar_parameter(self, message_name: str, prefix: str, fields, location: str, skip: set[str]) -> list[dict[str, Any]]:
        """Query parameters for the request fields that are not in the path or body (nested with dots)."""
        params: list[dict[str, Any]] = []
        for index, field in enumerate(fields):
            name = f"{prefix}{field.name}"
            if name in skip:
                continue
            if field.type == F.TYPE_MESSAGE:
                nested = field.type_name.lstrip(".")
                if nested in WELL_KNOWN or self._is_map(field) or field.label == F.LABEL_REPEATED:
                    continue  # not expressible as query parameters
                params += self.scalar_parameter(nested, f"{name}.", self.registry.messages[nested].field, location, skip)
                continue
            schema = self.field_schema(message_name, index, field)
            description = schema.pop("description", "")
            param = {"name": name, "in": location, "required": False, "schema": schema}
            if description:
                param["description"] = description
            if field.label == F.LABEL_REPEATED:
                param["explode"] = True
            params.append(param)
        return params


def _path_fields(template: str) -> list[str]:
    return _PARAM_RE.findall(template)


def _field_by_path(registry: Registry, message_name: str, dotted: str) -> tuple[str, int, descriptor_pb2.FieldDescriptorProto]:
    parts = dotted.split(".")
    name = message_name
    for depth, part in enumerate(parts):
        message = registry.messages[name]
        for index, field in enumerate(message.field):
            if field.name == part:
                if depth == len(parts) - 1:
                    return name, index, field
                name = field.type_name.lstrip(".")
                break
        else:
            raise SystemExit(f"{message_name} has no field {dotted!r} (named in an http rule)")
    raise AssertionError("unreachable")


def _response_content(builder: Builder, method, output: str, rule) -> dict[str, Any]:
    if output == HTTP_BODY:
        return HTTP_BODY_MEDIA.get(method.name, {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})
    _, index, field = _field_by_path(builder.registry, output, rule.response_body) if rule.response_body else (0, 0, None)
    if field is not None and field.type_name.lstrip(".") == HTTP_BODY:
        schema = {"type": "string", "format": "binary"}
    elif field is not None:
        schema = builder.field_schema(output, index, field)
        schema.pop("description", None)
        if list(schema) == ["allOf"] and len(schema["allOf"]) == 1:
            schema = schema["allOf"][0]
    else:
        schema = builder.ref(output)
    if method.server_streaming:
        schema = {"type": "array", "items": schema}
    return {"application/json": {"schema": schema}}


def build_openapi(files: descriptor_pb2.FileDescriptorSet, package: str = PUBLIC_PACKAGE) -> dict[str, Any]:
    registry = Registry(files)
    builder = Builder(registry)
    paths: dict[str, dict[str, Any]] = {}
    tags: list[dict[str, str]] = []
    for file in registry.files:
        if file.package != package:
            continue
        for s_index, service in enumerate(file.service):
            tags.append({"name": service.name, "description": registry.comment(file.name, (6, s_index))})
            for m_index, method in enumerate(service.method):
                if not method.options.HasExtension(annotations_pb2.http):
                    continue
                rule = method.options.Extensions[annotations_pb2.http]
                for binding in [rule, *rule.additional_bindings]:
                    verb = binding.WhichOneof("pattern")
                    if verb is None or verb == "custom":
                        continue
                    template = getattr(binding, verb)
                    paths.setdefault(_PARAM_RE.sub(r"{\1}", template), {})[verb] = _operation(
                        builder, file, service, method, binding, template, (6, s_index, 2, m_index)
                    )
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Slidelane REST API",
            "version": package.rsplit(".", 1)[-1],
            "description": (
                "REST/JSON view of the slidelane.v1 gRPC API, transcoded by Envoy from the protos' "
                "google.api.http annotations (this document is generated from the same annotations). "
                "Send your user id in the X-User-ID header. JSON uses proto field names; 64-bit "
                "integers are strings; errors are google.rpc.Status with google.rpc.BadRequest field "
                "violations in details."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": tags,
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"userId": {"type": "apiKey", "in": "header", "name": "X-User-ID"}},
            "schemas": {},
        },
        "security": [{"userId": []}],
    }
    builder.schemas.setdefault("google.rpc.Status", _status_schema())
    document["components"]["schemas"] = dict(sorted(builder.schemas.items()))
    return document


def _status_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "An error: the gRPC status code and message, and details such as google.rpc.BadRequest.",
        "properties": {
            "code": {"type": "integer", "format": "int32", "description": "google.rpc.Code"},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"@type": {"type": "string"}},
                    "additionalProperties": True,
                },
                "description": (
                    'e.g. {"@type": "type.googleapis.com/google.rpc.BadRequest", '
                    '"fieldViolations": [{"field": "jobs[2].depends_on", "description": "..."}]}'
                ),
            },
        },
    }


def _operation(builder: Builder, file, service, method, rule, template: str, path: tuple[int, ...]) -> dict[str, Any]:
    registry = builder.registry
    input_name = method.input_type.lstrip(".")
    output_name = method.output_type.lstrip(".")
    description = registry.comment(file.name, path)
    operation: dict[str, Any] = {
        "operationId": f"{service.name}_{method.name}",
        "tags": [service.name],
        "summary": description.split(". ")[0].rstrip(".") if description else method.name,
        "description": description
        + (" Streams: the answer is a JSON array whose elements arrive as they happen." if method.server_streaming else ""),
        "parameters": [],
        "responses": {
            "200": {"description": "OK", "content": _response_content(builder, method, output_name, rule)},
            "default": {
                "description": "An error (google.rpc.Status)",
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/google.rpc.Status"}}},
            },
        },
    }
    in_path = set(_path_fields(template))
    for dotted in _path_fields(template):
        owner, index, field = _field_by_path(registry, input_name, dotted)
        schema = builder.field_schema(owner, index, field)
        param_description = schema.pop("description", "")
        operation["parameters"].append(
            {"name": dotted, "in": "path", "required": True, "schema": schema, "description": param_description}
        )
    if rule.body == "*":
        fields = registry.messages[input_name].field
        schema = {
            "type": "object",
            "properties": {
                field.name: builder.field_schema(input_name, index, field)
                for index, field in enumerate(fields)
                if field.name not in in_path
            },
        }
        if desc := registry.described(input_name):
            schema["description"] = desc
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": schema}}}
    else:
        if rule.body:
            owner, index, field = _field_by_path(registry, input_name, rule.body)
            body_schema = builder.field_schema(owner, index, field)
            body_schema.pop("description", None)
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body_schema}}}
            in_path.add(rule.body)
        operation["parameters"] += builder.scalar_parameter(input_name, "", registry.messages[input_name].field, "query", in_path)
    if not operation["parameters"]:
        del operation["parameters"]
    if method.name == "GetHealth":
        operation["security"] = []  # health needs no identity
        # Served by the gateway's HTTP side (services/gateway/http.py), not the transcoder.
        operation["responses"]["503"] = {
            "description": "An essential component is down (status NOT_SERVING); the body names it",
            "content": operation["responses"]["200"]["content"],
        }
    return operation


def generate() -> dict[str, Any]:
    return build_openapi(load_descriptor_set())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the document here instead of printing it")
    parser.add_argument("--descriptor", type=Path, help="read this descriptor set instead of building one")
    args = parser.parse_args()
    files = (
        descriptor_pb2.FileDescriptorSet.FromString(args.descriptor.read_bytes()) if args.descriptor else load_descriptor_set()
    )
    text = json.dumps(build_openapi(files), indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
