"""Writes the .proto files of Triton's gRPC API back out of tritonclient's generated Python modules.

tritonclient's wheel (PyPI) ships grpc_service_pb2.py and model_config_pb2.py, each holding its file's serialized
FileDescriptorProto. We have PyPI but not GitHub, so this decodes those descriptors and prints them as proto3 source:
every message, enum, field number, label, oneof, map and service method as in the original (comments are not in
descriptors and are lost). Dev tooling only: run by scripts/gen-triton-proto.sh.

Usage: python descriptor_to_proto.py OUT_DIR
"""

import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from tritonclient.grpc import model_config_pb2, service_pb2

F = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64", F.TYPE_UINT64: "uint64",
    F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64", F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool",
    F.TYPE_STRING: "string", F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}

HEADER = """\
// Copyright (c) 2020, NVIDIA CORPORATION. All rights reserved.
//
// Redistribution and use in source and binary forms, with or without
// modification, are permitted provided that the following conditions
// are met:
//  * Redistributions of source code must retain the above copyright
//    notice, this list of conditions and the following disclaimer.
//  * Redistributions in binary form must reproduce the above copyright
//    notice, this list of conditions and the following disclaimer in the
//    documentation and/or other materials provided with the distribution.
//  * Neither the name of NVIDIA CORPORATION nor the names of its
//    contributors may be used to endorse or promote products derived
//    from this software without specific prior written permission.
//
// THIS SOFTWARE IS PROVIDED BY THE COPYRIGHT HOLDERS ``AS IS'' AND ANY
// EXPRESS OR IMPLIED WARRANTIES, INCLUDING, BUT NOT LIMITED TO, THE
// IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS FOR A PARTICULAR
// PURPOSE ARE DISCLAIMED.  IN NO EVENT SHALL THE COPYRIGHT OWNER OR
// CONTRIBUTORS BE LIABLE FOR ANY DIRECT, INDIRECT, INCIDENTAL, SPECIAL,
// EXEMPLARY, OR CONSEQUENTIAL DAMAGES (INCLUDING, BUT NOT LIMITED TO,
// PROCUREMENT OF SUBSTITUTE GOODS OR SERVICES; LOSS OF USE, DATA, OR
// PROFITS; OR BUSINESS INTERRUPTION) HOWEVER CAUSED AND ON ANY THEORY
// OF LIABILITY, WHETHER IN CONTRACT, STRICT LIABILITY, OR TORT
// (INCLUDING NEGLIGENCE OR OTHERWISE) ARISING IN ANY WAY OUT OF THE USE
// OF THIS SOFTWARE, EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE.
//
// Triton Inference Server's {name} (BSD-3-Clause: the notice above is the
// LICENSE file of the same wheel), as shipped in the PyPI wheel tritonclient[grpc]=={version} ({module}):
// decoded from its serialized FileDescriptorProto by
// scripts/tritonclient/descriptor_to_proto.py. Same messages, field numbers,
// labels and service as the original; its comments are not in the descriptor
// and are not reproduced. Do not edit: regenerate with scripts/gen-triton-proto.sh.
"""


def type_name(f: descriptor_pb2.FieldDescriptorProto, package: str) -> str:
    if f.type in SCALARS:
        return SCALARS[f.type]
    name = f.type_name.lstrip(".")
    return name[len(package) + 1 :] if name.startswith(package + ".") else name


def render_enum(e, ind):
    out = [f"{ind}enum {e.name} {{"]
    for v in e.value:
        out.append(f"{ind}  {v.name} = {v.number};")
    out.append(f"{ind}}}")
    return out


def render_message(m, package, ind):
    out = [f"{ind}message {m.name} {{"]
    maps = {n.name: n for n in m.nested_type if n.options.map_entry}
    for e in m.enum_type:
        out += render_enum(e, ind + "  ")
    for n in m.nested_type:
        if not n.options.map_entry:
            out += render_message(n, package, ind + "  ")

    def field(f, ind2):
        opts = []
        if f.options.HasField("packed"):
            opts.append(f"packed = {'true' if f.options.packed else 'false'}")
        if f.options.HasField("deprecated"):
            opts.append(f"deprecated = {'true' if f.options.deprecated else 'false'}")
        suffix = f" [{', '.join(opts)}]" if opts else ""
        entry = maps.get(f.type_name.rsplit(".", 1)[-1]) if f.type == F.TYPE_MESSAGE else None
        if entry is not None and f.label == F.LABEL_REPEATED:
            k, v = entry.field
            return f"{ind2}map<{type_name(k, package)}, {type_name(v, package)}> {f.name} = {f.number}{suffix};"
        label = "repeated " if f.label == F.LABEL_REPEATED else ("optional " if f.proto3_optional else "")
        return f"{ind2}{label}{type_name(f, package)} {f.name} = {f.number}{suffix};"

    done_oneofs = set()
    for f in m.field:
        if f.HasField("oneof_index") and not f.proto3_optional:
            i = f.oneof_index
            if i in done_oneofs:
                continue
            done_oneofs.add(i)
            out.append(f"{ind}  oneof {m.oneof_decl[i].name} {{")
            for g in m.field:
                if g.HasField("oneof_index") and g.oneof_index == i:
                    out.append(field(g, ind + "    "))
            out.append(f"{ind}  }}")
        else:
            out.append(field(f, ind + "  "))
    for r in m.reserved_range:
        out.append(f"{ind}  reserved {r.start} to {r.end - 1};" if r.end - 1 > r.start else f"{ind}  reserved {r.start};")
    for n in m.reserved_name:
        out.append(f'{ind}  reserved "{n}";')
    out.append(f"{ind}}}")
    return out


def render_file(module, version):
    fd = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(fd)
    pkg = fd.package
    lines = [HEADER.format(name=fd.name, version=version, module=module.__name__.rsplit(".", 1)[-1] + ".py"), f'syntax = "{fd.syntax or "proto2"}";', "", f"package {pkg};", ""]
    for d in fd.dependency:
        lines.append(f'import "{d}";')
    if fd.dependency:
        lines.append("")
    for e in fd.enum_type:
        lines += render_enum(e, "") + [""]
    for m in fd.message_type:
        lines += render_message(m, pkg, "") + [""]
    for s in fd.service:
        lines.append(f"service {s.name} {{")
        for me in s.method:
            cs = "stream " if me.client_streaming else ""
            ss = "stream " if me.server_streaming else ""
            it = me.input_type.lstrip(".").removeprefix(pkg + ".")
            ot = me.output_type.lstrip(".").removeprefix(pkg + ".")
            lines.append(f"  rpc {me.name}({cs}{it}) returns ({ss}{ot}) {{}}")
        lines.append("}")
        lines.append("")
    if fd.options.ListFields():
        raise SystemExit(f"{fd.name}: file options not handled: {fd.options}")
    return fd.name, "\n".join(lines).rstrip() + "\n", fd


if __name__ == "__main__":
    from importlib.metadata import version

    out = Path(sys.argv[1])
    v = version("tritonclient")
    for module in (model_config_pb2, service_pb2):
        name, text, _ = render_file(module, v)
        (out / name).write_text(text)
        print(f"wrote {out / name}")
