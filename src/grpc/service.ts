import { fromBinary, toBinary, type DescMessage, type DescService } from '@bufbuild/protobuf';
import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
import { GRPCInferenceService } from './gen/grpc_service_pb.js';

// The grpc-js definition of Triton's GRPCInferenceService, wired by hand from the protobuf-es descriptors (no
// @grpc/proto-loader, no second protobuf runtime): each RPC's path is `/inference.GRPCInferenceService/<Name>`, its
// messages go through protobuf-es's toBinary/fromBinary. Clients (tests, the docs' Node example) use the same table.

/** A definition's methods by their proto name (`ModelInfer`); grpc-js also answers to the local name (`modelInfer`). */
export type InferenceServiceDefinition = ServiceDefinition<Record<string, unknown>>;

const readOptions = { readUnknownFields: false };

/**
 * The service's grpc-js definition. `rawRequests`: the server's side, where a request reaches its handler as the
 * bytes it came in and is decoded there ({@link decodeRequest}), so that a malformed message gets INVALID_ARGUMENT
 * with our error code rather than grpc-js's INTERNAL, and the handler knows its size to admit it.
 */
export function serviceDefinition(
  { rawRequests }: { rawRequests: boolean },
  service: DescService = GRPCInferenceService,
): InferenceServiceDefinition {
  const definition: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const m of service.methods) {
    // a message, or one already encoded (ModelInfer's answer: grpc/tensors.ts writes typed contents from arrays)
    const encode = (desc: DescMessage) => (value: unknown) =>
      value instanceof Uint8Array
        ? Buffer.from(value.buffer, value.byteOffset, value.byteLength)
        : Buffer.from(toBinary(desc, value as never));
    const decode = (desc: DescMessage) => (bytes: Buffer) => fromBinary(desc, bytes, readOptions);
    definition[m.name] = {
      path: `/${service.typeName}/${m.name}`,
      requestStream: m.methodKind === 'client_streaming' || m.methodKind === 'bidi_streaming',
      responseStream: m.methodKind === 'server_streaming' || m.methodKind === 'bidi_streaming',
      requestSerialize: encode(m.input),
      requestDeserialize: rawRequests ? (bytes: Buffer) => bytes : decode(m.input),
      responseSerialize: encode(m.output),
      responseDeserialize: decode(m.output),
      originalName: m.localName,
    };
  }
  return definition;
}

/** Decodes a request's bytes (see `rawRequests`); throws protobuf-es's error for a malformed message. */
export function decodeRequest<D extends DescMessage>(desc: D, bytes: Uint8Array) {
  return fromBinary(desc, bytes, readOptions);
}
