"""``python -m adapters``: list the reference deployments and how to run each."""

from __future__ import annotations

from adapters import DEPLOYMENTS

for d in DEPLOYMENTS.values():
    print(f"{d.name:<11} {d.chain_id:<28} {d.about}")
print("\nits node:    python -m adapters.node --deployment <name> --state DIR --seed-data \\")
print("               --listen 127.0.0.1:PORT [--activity] [--witness VKEY@URL] [--info-out F]")
print("its adapter: python -m adapters.<name> --node http://127.0.0.1:PORT --listen 127.0.0.1:0 \\")
print("               --tls-cert PEM --tls-key PEM [--tls-client-ca PEM] [--descriptor-out F]")
print("               [--advertise HOST[:PORT]] [--institution CODE]")
print("a witness: python -m adapters.witness --help")
