"""The Intel SGX Provisioning Certification Root CA (used for SGX and TDX)."""
