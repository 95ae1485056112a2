"""``openckpt signature sign|verify DIR``: OpenSSF model-signing bundles, offline, with EC keys or X.509 chains.

Exit codes: 0 verified or signed, 1 the signature does not verify (untrusted, or files differ), 2 errors.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from openckpt.cli._output import EXIT_FINDINGS, byte_progress, err, guard, out, print_json

if TYPE_CHECKING:
    from openckpt.signing import VerifiedSignature

__all__ = ["signature_app", "sign_command", "verify_command"]

signature_app = typer.Typer(
    name="signature",
    help="Sign and verify models as OpenSSF model-signing bundles (Sigstore bundle v0.3), offline.",
    no_args_is_help=True,
)


class Method(StrEnum):
    files = "files"
    shards = "shards"


class Hash(StrEnum):
    sha256 = "sha256"
    blake3 = "blake3"


def _without_cryptography(e: ModuleNotFoundError) -> Exception:
    """A one-line error for a missing optional dependency; any other missing module stays a bug."""
    from openckpt.errors import OpenckptError

    if not (e.name or "").startswith("cryptography"):
        return e
    return OpenckptError("signatures need cryptography: pip install 'openckpt[signing]'")


@guard
def sign_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory to sign (every file under it).")],
    key: Annotated[Path, typer.Option("--key", help="EC private key (PEM; P-256, P-384 or P-521).")],
    cert: Annotated[Path | None, typer.Option("--cert", help="Signing certificate (PEM) for the key.")] = None,
    chain: Annotated[
        list[Path] | None,
        typer.Option("--cert-chain", "--chain", help="Intermediate (and root) certificates, PEM; repeatable."),
    ] = None,
    signature: Annotated[
        Path | None, typer.Option("--signature", help="Where to write the bundle (default: DIR/model.sig).")
    ] = None,
    serialization: Annotated[Method, typer.Option(help="One digest per file, or per shard of a file.")] = Method.files,
    hash_type: Annotated[Hash, typer.Option("--hash", help="Digest of each file or shard.")] = Hash.sha256,
    shard_size: Annotated[int, typer.Option(help="Bytes per shard (shards serialization).")] = 1_000_000_000,
    ignore: Annotated[
        list[str] | None, typer.Option("--ignore", help="Path inside DIR to leave unsigned; repeatable.")
    ] = None,
    ignore_git: Annotated[bool, typer.Option(help="Leave .git, .gitattributes, .github, .gitignore unsigned.")] = True,
    allow_symlinks: Annotated[bool, typer.Option(help="Sign symlinked files by their targets' bytes.")] = False,
    password_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the key's password, if encrypted.")
    ] = None,
) -> None:
    """Sign every file under DIR with an EC key (and its X.509 certificate chain, if given)."""
    import os

    try:
        from openckpt.signing import sign
    except ModuleNotFoundError as e:
        raise _without_cryptography(e) from None

    password = os.environ.get(password_env) if password_env else None
    with byte_progress(err()) as bar:
        task = bar.add_task("hashing", total=None)
        path = sign(
            model_dir,
            key=key,
            certificate=cert,
            chain=chain or (),
            signature=signature,
            password=password,
            serialization=serialization.value,
            hash_type=hash_type.value,
            shard_size=shard_size,
            ignore=ignore or (),
            ignore_git=ignore_git,
            allow_symlinks=allow_symlinks,
            progress=lambda n: bar.advance(task, n),
        )
    how = f"{hash_type.value}, {serialization.value}" + (", X.509 chain" if cert else "")
    out().print(f"[green]signed[/] {escape(str(model_dir))} ({how}) → {escape(str(path))}", soft_wrap=True)


def _report(result: VerifiedSignature) -> dict[str, Any]:
    return {
        "ok": True,
        "model": result.name,
        "digest": result.digest,
        "serialization": result.serialization.to_json(),
        "files": list(result.files),
        "key_hint": result.key_hint,
        "certificates": [c.subject.rfc4514_string() for c in result.certificates],
    }


@guard
def verify_command(
    model_dir: Annotated[Path, typer.Argument(help="Model directory to check.")],
    signature: Annotated[
        Path | None, typer.Option("--signature", help="The bundle to check (default: DIR/model.sig).")
    ] = None,
    key: Annotated[Path | None, typer.Option("--key", help="Signer's public key (PEM key or certificate).")] = None,
    cert_chain: Annotated[
        list[Path] | None, typer.Option("--cert-chain", help="Trusted root certificates (PEM); repeatable.")
    ] = None,
    ignore: Annotated[list[str] | None, typer.Option("--ignore", help="Path inside DIR to skip; repeatable.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")] = False,
) -> None:
    """Check a signature: signed by --key (or chained to --cert-chain roots), and DIR holds exactly the signed files."""
    from openckpt.errors import ModelMismatchError, SignatureError

    if (key is None) == (not cert_chain):
        raise typer.BadParameter("give either --key or --cert-chain")
    try:
        from openckpt.signing import verify
    except ModuleNotFoundError as e:
        raise _without_cryptography(e) from None

    console = err()
    try:
        with byte_progress(console) as bar:
            task = bar.add_task("hashing", total=None)
            result = verify(
                model_dir,
                signature=signature,
                public_key=key,
                roots=cert_chain or None,
                ignore=ignore or (),
                progress=lambda n: bar.advance(task, n),
            )
    except SignatureError as e:
        diffs = e.differences if isinstance(e, ModelMismatchError) else []
        if as_json:
            print_json({"ok": False, "error": type(e).__name__, "message": str(e), "differences": diffs})
        elif diffs:
            for d in diffs:
                console.print(f"[red]error:[/] {escape(d)}", soft_wrap=True)
        else:
            console.print(f"[red]error:[/] {escape(str(e))}", soft_wrap=True)
        raise typer.Exit(EXIT_FINDINGS) from None
    if as_json:
        print_json(_report(result))
        return
    config = result.serialization
    signer = (
        f"certificate {result.certificates[0].subject.rfc4514_string()!r}, "
        f"trusted through {result.certificates[-1].subject.rfc4514_string()!r}"
        if result.certificates
        else f"key hint {result.key_hint[:16]}…"
    )
    summary = f"{len(result.files)} files match the signature ({config.hash_type}, {config.method}), signed by {signer}"
    out().print(f"[green]ok[/]: {escape(summary)}", soft_wrap=True)


signature_app.command("sign")(sign_command)
signature_app.command("verify")(verify_command)
