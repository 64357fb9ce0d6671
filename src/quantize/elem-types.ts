import { DataType, type NodeProto } from '../onnx/model.js';
import type { GraphIndex } from './graph.js';

/**
 * Element types of every tensor, by a forward pass: graph inputs, initializers and value_info where declared,
 * otherwise per-op rules (most ops output their first input's type).
 */
export function inferElemTypes(g: GraphIndex, nodes: NodeProto[]): Map<string, DataType> {
  const types = new Map<string, DataType>();
  const declared = new Map<string, DataType>();
  for (const vi of [...g.graph.input, ...g.graph.valueInfo, ...g.graph.output]) {
    if (vi.type?.value.case === 'tensorType' && vi.type.value.value.elemType) {
      declared.set(vi.name, vi.type.value.value.elemType);
    }
  }
  for (const i of g.graph.input) if (declared.has(i.name)) types.set(i.name, declared.get(i.name)!);
  for (const t of g.graph.initializer) types.set(t.name, t.dataType);
  const int = (n: NodeProto, name: string) => {
    const a = n.attribute.find((x) => x.name === name);
    return a ? Number(a.i) : undefined;
  };
  for (const n of nodes) {
    const inType = (i: number) => types.get(n.input[i] ?? '');
    const rule = outputTypes(n, inType, int);
    n.output.forEach((o, i) => {
      const t = declared.get(o) ?? rule[Math.min(i, rule.length - 1)];
      if (o && t !== undefined) types.set(o, t);
    });
  }
  return types;
}

type Elem = DataType | undefined;

function outputTypes(
  n: NodeProto,
  inType: (i: number) => Elem,
  int: (n: NodeProto, name: string) => number | undefined,
): Elem[] {
  const D = DataType;
  switch (n.opType) {
    case 'Shape':
    case 'Size':
    case 'NonZero':
    case 'ArgMax':
    case 'ArgMin':
    case 'NonMaxSuppression':
      return [D.INT64];
    case 'Equal':
    case 'Less':
    case 'Greater':
    case 'LessOrEqual':
    case 'GreaterOrEqual':
    case 'Not':
    case 'And':
    case 'Or':
    case 'Xor':
    case 'IsNaN':
    case 'IsInf':
      return [D.BOOL];
    case 'Cast':
      return [int(n, 'to')];
    case 'CastLike':
      return [inType(1)];
    case 'Constant': {
      const a = n.attribute[0];
      if (!a) return [undefined];
      if (a.name === 'value' || a.name === 'sparse_value') return [a.t?.dataType ?? a.sparseTensor?.values?.dataType];
      if (a.name === 'value_float' || a.name === 'value_floats') return [D.FLOAT];
      if (a.name === 'value_int' || a.name === 'value_ints') return [D.INT64];
      return [D.STRING];
    }
    case 'ConstantOfShape':
      return [n.attribute.find((a) => a.name === 'value')?.t?.dataType ?? D.FLOAT];
    case 'RandomNormal':
    case 'RandomUniform':
      return [int(n, 'dtype') ?? D.FLOAT];
    case 'RandomNormalLike':
    case 'RandomUniformLike':
    case 'EyeLike':
      return [int(n, 'dtype') ?? inType(0)];
    case 'Multinomial':
      return [int(n, 'dtype') ?? D.INT32];
    case 'Where':
      return [inType(1)];
    case 'OneHot':
      return [inType(2)];
    case 'TopK':
    case 'MaxPool':
      return [inType(0), D.INT64];
    case 'Unique':
      return [inType(0), D.INT64];
    case 'Dropout':
      return [inType(0), D.BOOL];
    case 'LayerNormalization':
      return [inType(0), D.FLOAT];
    case 'DynamicQuantizeLinear':
      return [D.UINT8, D.FLOAT, D.UINT8];
    case 'QuantizeLinear':
      return [inType(2) ?? D.UINT8];
    case 'DequantizeLinear':
      return [inType(1)];
    case 'MatMulInteger':
    case 'ConvInteger':
      return [D.INT32];
    case 'QLinearConv':
      return [inType(7)];
    case 'QLinearMatMul':
      return [inType(7)];
    default:
      return [inType(0)];
  }
}
