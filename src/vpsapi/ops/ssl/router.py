from fastapi import APIRouter

router = APIRouter(prefix="/api/ssl", tags=["ops: TLS certificates"])
