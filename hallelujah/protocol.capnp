# Every message on the wire. One frame = 4-byte little-endian length + one `Message`; a
# `dataReq` frame is followed on the socket by `bodyLength` bytes of raw Arrow IPC (a record
# batch message without its schema), never inside the capnp frame (LIMITS.md fact 2).
# Each xReq is handled by exactly one `on_x_req`, answered by its xCfm.
@0xd1a6e7c9b3f05a21;

struct Error {
  kind @0 :Text;      # TradecraftError, SchemaMismatch, NotFound, Unavailable, HallelujahError
  message @1 :Text;
  path @2 :Text;      # JSON path or stream name at fault, when there is one
}

# Application -> Congregation. `args` and `result` are JSON objects: documents and
# descriptions are JSON already, and the command set grows without schema churn.
struct CmdReq {
  id @0 :UInt64;
  command @1 :Text;   # submit list describe publish stream cancel query
  args @2 :Text;
  token @3 :Text;     # a client's token (hallelujah/tokens.py), checked when the congregation runs TLS
}
struct CmdCfm {
  id @0 :UInt64;
  union {
    result @1 :Text;  # JSON
    error @2 :Error;
  }
  schema @3 :Data;    # Arrow IPC schema of the datastream that follows (publish, stream)
}

# Congregation -> Congregation that hosts an analytic's Hallelu.
struct HalleluReq { id @0 :UInt64; tradecraft @1 :Text; analytic @2 :Text; }
struct HalleluCfm { id @0 :UInt64; union { ok @1 :Void; error @2 :Error; } }

# Congregation -> worker: create (or stop) one Jah.
struct JahReq {
  id @0 :UInt64;
  jah @1 :Text;       # jah id, e.g. "gps/tiled/transform-0"
  spec @2 :Text;      # JSON: role, analytic spec, schemas, resume positions
  stop @3 :Bool;
}
struct JahCfm { id @0 :UInt64; union { ok @1 :Void; error @2 :Error; } }

# Congregation -> worker: the open state of a stateful Jah (an aggregate's open windows), for
# `query`: an Arrow IPC stream of its rows.
struct QueryReq { id @0 :UInt64; jah @1 :Text; }
struct QueryCfm { id @0 :UInt64; union { rows @1 :Data; error @2 :Error; } }

# Hallelu -> worker: change a running Jah (a PREJOIN re-routes partitions to the JOINs of a
# split). `args` and `result` are JSON.
struct ControlReq { id @0 :UInt64; jah @1 :Text; args @2 :Text; }
struct ControlCfm { id @0 :UInt64; union { result @1 :Text; error @2 :Error; } }

# Hallelu -> worker: wire a datastream, receiver first (expect) then sender (act).
struct StreamReq {
  id @0 :UInt64;
  stream @1 :Text;    # datastream id
  jah @2 :Text;       # the local Jah
  port @3 :Text;      # its input or output port ("in", "out", "rejected", a route)
  act @4 :Bool;       # false: expect an incoming stream; true: connect to `address`
  address @5 :Text;   # receiver's socket path, or "local" for an in-process channel
  credits @6 :UInt32; # receiver's credit window (batches)
  schema @7 :Data;
  detach @8 :Bool;    # with act: the receiver has retired; the sender stops sending to it
}
struct StreamCfm { id @0 :UInt64; union { ok @1 :Void; error @2 :Error; } }

# The first frame on a datastream connection, from the sender.
struct StreamOpen { stream @0 :Text; schema @1 :Data; }

enum Marker { none @0; endOfStream @1; watermark @2; handover @3; checkpoint @4; }

struct DataReq {
  seq @0 :UInt64;        # per-stream sequence number
  origin @1 :Int64;      # sequence number of the source batch this batch derives from (exactly-once)
  source @2 :Text;       # the source the origin counts in
  marker @3 :Marker;
  markerValue @4 :Int64; # watermark time, checkpoint id, …
  bodyLength @5 :UInt64; # raw Arrow IPC bytes following this frame (0 for a bare marker)
  rows @6 :UInt64;
  parts @7 :UInt32;      # into how many datastreams this position was split (each gets a part)
}
struct DataCfm { credits @0 :UInt32; }   # receiver grants this many more batches

# Worker <-> Congregation house-keeping.
# A worker registers with this, only over its congregation's private Unix socket; `secret` is
# the per-start secret its zygote made before forking (compared in constant time).
struct Hello { worker @0 :Int32; pid @1 :Int32; address @2 :Text; secret @3 :Data; }
struct Stats { jahs @0 :Text; }          # JSON {jah: {rows_in, rows_out, busy, backlog}}
struct JahEvent { jah @0 :Text; event @1 :Text; detail @2 :Text; }   # finished, failed, progress
# Either way: a log was written (appended, ended, shown), for the other side's followers of it.
struct LogChanged { log @0 :Text; }

struct Message {
  union {
    cmdReq @0 :CmdReq;
    cmdCfm @1 :CmdCfm;
    halleluReq @2 :HalleluReq;
    halleluCfm @3 :HalleluCfm;
    jahReq @4 :JahReq;
    jahCfm @5 :JahCfm;
    streamReq @6 :StreamReq;
    streamCfm @7 :StreamCfm;
    streamOpen @8 :StreamOpen;
    dataReq @9 :DataReq;
    dataCfm @10 :DataCfm;
    hello @11 :Hello;
    stats @12 :Stats;
    jahEvent @13 :JahEvent;
    queryReq @14 :QueryReq;
    queryCfm @15 :QueryCfm;
    controlReq @16 :ControlReq;
    controlCfm @17 :ControlCfm;
    logChanged @18 :LogChanged;
  }
}
