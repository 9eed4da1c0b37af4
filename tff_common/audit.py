"""What the server of a federated computation receives from the clients.

A TFF computation moves a value from CLIENTS to SERVER only through an
aggregation intrinsic (`federated_sum`, `federated_aggregate`,
`federated_mean`, `federated_secure_sum_bitwidth`, ...). `server_inputs`
lists every such intrinsic in a computation with the type of the client
values it takes, which is the whole of what a server can observe of the
clients in that computation. It reads the computation as TFF built it,
before `tff_common.runtime` compiles its secure sums into plain ones for the
simulation, so `secure` shows for a secure sum.

Used by the tests of secure aggregation (the model update reaches the server
only through secure sums) and by the privacy documentation.
"""

import dataclasses

SECURE_INTRINSICS = ('federated_secure_sum', 'federated_secure_sum_bitwidth',
                     'federated_secure_modular_sum')


@dataclasses.dataclass(frozen=True)
class ServerInput:
  """One intrinsic that brings client values to the server.

  Attributes:
    intrinsic: Its name, e.g. 'federated_secure_sum_bitwidth'.
    client_type: The type of what each client contributes, e.g.
      '<float32[3,2],float32[2]>' (for `federated_aggregate`, the client values
      before the computation's own accumulation).
  """
  intrinsic: str
  client_type: str

  @property
  def secure(self) -> bool:
    return self.intrinsic in SECURE_INTRINSICS


def server_inputs(computation) -> list[ServerInput]:
  """Every CLIENTS -> SERVER intrinsic of `computation`, in tree order.

  Args:
    computation: A `tff.Computation` (e.g. a learning process's `next`, or an
      aggregation process's `next`).
  """
  from tensorflow_federated.python.core.impl.compiler import building_blocks
  from tensorflow_federated.python.core.impl.types import computation_types
  from tensorflow_federated.python.core.impl.types import placements

  found = []
  stack = [computation.to_building_block()]
  while stack:
    block = stack.pop()
    if isinstance(block, building_blocks.Intrinsic):
      signature = block.type_signature
      result = getattr(signature, 'result', None)
      if (isinstance(result, computation_types.FederatedType)
          and result.placement == placements.SERVER):
        client_types = _client_members(signature.parameter)
        if client_types:
          found.append(ServerInput(intrinsic=block.uri, client_type=str(client_types[0])))
    stack.extend(reversed(list(block.children())))
  return found


def _client_members(type_spec) -> list:
  """The member types of the CLIENTS-placed parts of an intrinsic's parameter."""
  from tensorflow_federated.python.core.impl.types import computation_types
  from tensorflow_federated.python.core.impl.types import placements

  if type_spec is None:
    return []
  if isinstance(type_spec, computation_types.FederatedType):
    return [type_spec.member] if type_spec.placement == placements.CLIENTS else []
  if isinstance(type_spec, computation_types.StructType):
    members = []
    for element in type_spec:
      members.extend(_client_members(element))
    return members
  return []
