"""Shared helpers for scripts that rewrite GGUF files with PyPI gguf (0.19)."""
import gguf


def field_value(f):
    """(value, element type or None) of a GGUFReader field, as GGUFWriter.add_key_value takes it."""
    t = f.types[0]
    if t == gguf.GGUFValueType.ARRAY:
        et = f.types[1]
        if et == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", "surrogateescape") for i in f.data], et
        return [f.parts[i].tolist()[0] for i in f.data], et
    if t == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8", "surrogateescape"), None
    return f.parts[f.data[0]].tolist()[0], None


def copy_metadata(reader, writer, transform=None):
    """Copies every key (types kept) from reader to writer, except the GGUF.* pseudo-keys and
    general.architecture (the writer sets it). transform(key, value, type, elem_type) may return a
    replacement value."""
    for k, f in reader.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        v, et = field_value(f)
        t = f.types[0]
        if transform:
            v = transform(k, v, t, et)
        if t == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(k, v, t, sub_type=et)
        else:
            writer.add_key_value(k, v, t)


def architecture(reader):
    f = reader.fields["general.architecture"]
    return bytes(f.parts[f.data[0]]).decode()
