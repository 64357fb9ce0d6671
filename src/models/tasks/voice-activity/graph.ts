import { clone } from '@bufbuild/protobuf';
import {
  DataType,
  graphInputs,
  graphOutputs,
  makeGraph,
  node,
  valueInfo,
  type ModelProto,
  type ValueDescription,
} from '../../../onnx/model.js';
import {
  GraphProtoSchema,
  ModelProtoSchema,
  ValueInfoProtoSchema,
  type ValueInfoProto,
} from '../../../onnx/proto/onnx_pb.js';

// A recurrent frame model wrapped in an ONNX Scan, so that one call runs many frames of each request: the frames'
// windows go in as [batch, frames, samples], the state is carried from frame to frame inside onnxruntime, and the
// probabilities come out as [batch, frames, 1]. The frame graph itself is unchanged (its outputs are bit-identical
// to calling it frame by frame), but a 10-minute recording is 586 calls of 32 frames instead of 18,750, which is
// what lets the model run on a worker thread instead of the event loop.

/** Names of the wrapped graph's inputs and outputs (besides the sample-rate input, which keeps its name). */
export const FRAMED = {
  frames: 'muon_frames',
  state: 'muon_state',
  probabilities: 'muon_probabilities',
  stateOut: 'muon_state_out',
} as const;

/** The frame graph's tensors, recognised as the pipeline recognises them (see voiceActivity). */
interface FrameGraph {
  readonly audio: string;
  readonly state: string;
  readonly rate: string;
  readonly probability: string;
  readonly stateOut: string;
}

const isFloat = (v: ValueDescription) => v.elemType === DataType.FLOAT;
const only = (list: ValueDescription[], ok: (v: ValueDescription) => boolean) => {
  const found = list.filter(ok);
  return found.length === 1 ? found[0].name : undefined;
};

/** A value's declaration (type and shape) under another name. */
function renamed(v: ValueInfoProto, name: string): ValueInfoProto {
  const copy = clone(ValueInfoProtoSchema, v);
  copy.name = name;
  return copy;
}

function frameGraph(model: ModelProto, probabilityName: string | undefined): FrameGraph | undefined {
  const inputs = graphInputs(model);
  const outputs = graphOutputs(model);
  if (inputs.length !== 3) return undefined;
  const audio = only(inputs, (v) => isFloat(v) && v.dims?.length === 2);
  const state = only(inputs, (v) => isFloat(v) && v.dims?.length === 3);
  const rate = only(inputs, (v) => v.elemType === DataType.INT64 && v.dims?.length === 0);
  const probability = probabilityName
    ? only(outputs, (v) => v.name === probabilityName)
    : only(outputs, (v) => v.dims?.length === 2);
  const stateOut = only(outputs, (v) => v.name !== probability && v.dims?.length === 3);
  if (!audio || !state || !rate || !probability || !stateOut) return undefined;
  return { audio, state, rate, probability, stateOut };
}

/**
 * The model wrapped in a Scan over frames (inputs {@link FRAMED}.frames [batch, frames, samples] and .state, plus
 * the sample-rate input; outputs .probabilities [batch, frames, 1] and .stateOut), or undefined when the graph is
 * not a frame model the pipeline knows (it then runs the file's graph one frame per call, and reports what is wrong).
 */
export function framedModel(model: ModelProto, probabilityName?: string): ModelProto | undefined {
  const g = model.graph;
  // before IR 4 initializers are listed as graph inputs, which the body's inputs must not be
  const f = g && model.irVersion >= 4n && frameGraph(model, probabilityName);
  if (!g || !f) return undefined;
  const byName = (list: typeof g.input, name: string) => list.find((v) => v.name === name)!;
  // the body: the frame graph, with the state first (Scan's carried values come before its scanned inputs) and the
  // sample rate read from the outer graph
  const body = clone(GraphProtoSchema, g);
  body.name = `${g.name || 'frame'}_frame`;
  body.input = [byName(g.input, f.state), byName(g.input, f.audio)];
  body.output = [byName(g.output, f.stateOut), byName(g.output, f.probability)];
  const wrapped = clone(ModelProtoSchema, model);
  wrapped.graph = makeGraph({
    name: `${g.name || 'frame'}_frames`,
    nodes: [
      node(
        'Scan',
        [FRAMED.state, FRAMED.frames],
        [FRAMED.stateOut, FRAMED.probabilities],
        { body, num_scan_inputs: 1, scan_input_axes: [1], scan_output_axes: [1] },
        { name: 'frames' },
      ),
    ],
    // the window is left symbolic: a fixed one would make onnxruntime check branches the rate never takes (Silero's
    // 8 kHz branch fails shape inference at 576 samples)
    inputs: [
      valueInfo(FRAMED.frames, DataType.FLOAT, ['batch', 'frames', 'samples']),
      renamed(byName(g.input, f.state), FRAMED.state),
      byName(g.input, f.rate),
    ],
    outputs: [
      valueInfo(FRAMED.probabilities, DataType.FLOAT, ['batch', 'frames', null]),
      renamed(byName(g.output, f.stateOut), FRAMED.stateOut),
    ],
  });
  return wrapped;
}
