"""
The project's file helpers, standard library only (the generators import them and no torch):
atomic writes, and the check that a checkpoint file is the plain zip archive torch.save writes
before torch.load opens it.
"""

import json
import os
import struct
import tempfile
import zipfile

# A checkpoint's zip directory, read before torch.load: torch.save stores every entry uncompressed
# (ZIP_STORED), a few per tensor; even gpt2-xl with its optimizer state has a few thousand.
MAX_ZIP_ENTRIES = 100_000


def atomic_write(path, write, binary=False, overwrite=True):
    """Call write(f) on a temp file beside path, then move it to path: readers never see half a
    file, and an interrupted write never replaces a good one. The project's one atomic writer
    (data splits, run summaries, checkpoints). overwrite=False never replaces a file that is
    there (FileExistsError), even one that appeared while write ran."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; these files are for everyone
        if overwrite:
            os.replace(tmp, path)
        else:
            place_new(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def place_new(tmp, path):
    """Move tmp to path unless path exists. A hard link fails when path is there, so nothing
    that appears meanwhile is replaced; where links are not supported, check and rename."""
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path}: already exists; not overwriting it") from None
    except OSError:  # a file system without hard links
        if os.path.lexists(path):
            raise FileExistsError(f"{path}: already exists; not overwriting it") from None
        os.replace(tmp, path)
    else:
        os.unlink(tmp)


def write_json(path, obj, indent=None, overwrite=True):
    """obj as UTF-8 JSON, written atomically (data splits, run summaries)."""
    atomic_write(path, lambda f: json.dump(obj, f, ensure_ascii=False, indent=indent), overwrite=overwrite)


def zip_directory(f, size):
    """(entries, bytes) of a zip file's central directory, read from its end records (the
    zip64 ones where the classic record says so), or None when there is no end record."""
    n = min(size, 22 + 0xFFFF)  # the end record, and a comment of at most 64 KB after it
    f.seek(size - n)
    tail = f.read(n)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0 or len(tail) - i < 22:
        return None
    entries, cd_size = struct.unpack_from("<HI", tail, i + 10)
    if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and i >= 20 and tail[i - 20:i - 16] == b"PK\x06\x07":
        (offset,) = struct.unpack_from("<Q", tail, i - 12)  # where the zip64 end record is
        if offset + 56 <= size:
            f.seek(offset)
            record = f.read(56)
            if record[:4] == b"PK\x06\x06":
                entries, cd_size = struct.unpack_from("<QQ", record, 32)
    return entries, cd_size


def check_checkpoint_zip(path):
    """Refuse, in one ValueError line naming path, a file that torch.load would read into far
    more memory than the file holds: a checkpoint is a zip archive whose entries torch.save
    stores uncompressed, so a compressed entry (a small file that inflates to gigabytes), an
    entry that declares more bytes than the file has, or entries that together do (several
    pointing at the same bytes) is not one torch.save wrote. Call it before torch.load."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: not a checkpoint file (a folder or a device?)")
    size = os.path.getsize(path)
    bad = f"{path}: not a readable checkpoint"
    with open(path, "rb") as f:
        directory = zip_directory(f, size)
        if directory is None:
            raise ValueError(f"{bad} ({'an empty file' if size == 0 else 'not a zip archive, which torch.save writes'})")
        entries, cd_size = directory
        if entries > MAX_ZIP_ENTRIES or cd_size > size:
            raise ValueError(f"{bad} (its zip directory lists {entries:,} entries in {cd_size:,} bytes, of a "
                             f"{size:,}-byte file; torch.save writes a few per tensor)")
        try:
            infos = zipfile.ZipFile(f).infolist()
        except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:  # OSError: a seek before the start
            raise ValueError(f"{bad} (a damaged zip archive: {str(e)[:120]})") from None
    total = 0
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED:
            raise ValueError(f"{bad} (entry '{info.filename[:80]}' is compressed; torch.save stores every entry as is)")
        if info.file_size > size:
            raise ValueError(f"{bad} (entry '{info.filename[:80]}' declares {info.file_size:,} bytes, more than "
                             f"the file's {size:,})")
        total += info.file_size
    if total > size:
        raise ValueError(f"{bad} (its entries declare {total:,} bytes in all, more than the file's {size:,}: "
                         f"entries that share their bytes?)")
