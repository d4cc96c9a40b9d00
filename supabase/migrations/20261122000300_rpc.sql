-- Functions the Supabase backend calls through PostgREST (`/rest/v1/rpc/...`).
-- PostgREST runs every HTTP request as its own transaction, so each write that
-- must be all-or-nothing is one function call. The Postgres backend runs its
-- own SQL and does not need them. Idempotent (create or replace).

-- Lets the server check at startup that these migrations reached the project.
create or replace function public.jelly_api_version()
returns integer
language sql
immutable
set search_path = ''
as $$ select 1 $$;

-- The user for a token; a new user's first chat message is the greeting.
-- Concurrent first contacts with one token create one user and one greeting.
create or replace function public.jelly_get_or_create_user(p_token text, p_greeting text)
returns table (user_id bigint, created boolean)
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
    v_id bigint;
begin
    insert into public.users (token) values (p_token)
    on conflict (token) do nothing
    returning id into v_id;
    if v_id is null then
        select u.id into v_id from public.users u where u.token = p_token;
        return query select v_id, false;
        return;
    end if;
    insert into public.chat_messages (user_id, type, content) values (v_id, 'jelly', p_greeting);
    return query select v_id, true;
end;
$$;

-- The tool messages, the jelly answer and the question/answer pair of one turn.
create or replace function public.jelly_add_answer(
    p_user_id bigint,
    p_question text,
    p_answer text,
    p_application text default null,
    p_sources jsonb default '[]'::jsonb,
    p_tool_messages text[] default '{}'::text[]
)
returns bigint
language plpgsql
set search_path = ''
as $$
declare
    v_id bigint;
begin
    insert into public.chat_messages (user_id, type, content, application)
    select p_user_id, 'tool', m.content, p_application
    from unnest(coalesce(p_tool_messages, '{}'::text[])) with ordinality as m (content, n)
    order by m.n;
    insert into public.chat_messages (user_id, type, content, application)
    values (p_user_id, 'jelly', p_answer, p_application);
    insert into public.qa (user_id, question, answer, application, sources)
    values (p_user_id, p_question, p_answer, p_application, coalesce(p_sources, '[]'::jsonb))
    returning id into v_id;
    return v_id;
end;
$$;

-- What each knowledge base holds, per embedder (the same grouping as the
-- Postgres store's query, so both backends report alike).
create or replace function public.jelly_knowledge_bases()
returns table (kb text, embedder text, dimension int, documents bigint, chunks bigint)
language sql
stable
set search_path = ''
as $$
    select d.kb, d.embedder, d.dimension, count(*), coalesce(sum(d.chunks), 0)
    from public.kb_documents d
    group by d.kb, d.embedder, d.dimension
    order by d.kb, count(*) desc
$$;

-- A document and its chunks, replacing the stored version and all its old chunks.
-- `p_chunks`: [{"content": ..., "metadata": {...}, "embedding": "[0.1,...]" | null}, ...]
create or replace function public.jelly_replace_document(
    p_kb text,
    p_source text,
    p_title text,
    p_content_hash text,
    p_updated_at timestamptz,
    p_embedder text,
    p_dimension int,
    p_chunks jsonb
)
returns bigint
language plpgsql
set search_path = public, extensions  -- where `create extension vector` may have put the type
as $$
declare
    v_id bigint;
begin
    insert into public.kb_documents as d
        (kb, source, title, content_hash, updated_at, embedder, dimension, chunks)
    values (p_kb, p_source, p_title, p_content_hash, p_updated_at, p_embedder, p_dimension,
            jsonb_array_length(p_chunks))
    on conflict (kb, source) do update set
        title = excluded.title, content_hash = excluded.content_hash,
        updated_at = excluded.updated_at, embedder = excluded.embedder,
        dimension = excluded.dimension, chunks = excluded.chunks, ingested_at = now()
    returning d.id into v_id;
    delete from public.kb_chunks c where c.document_id = v_id;
    insert into public.kb_chunks (kb, document_id, content, metadata, embedding)
    select p_kb, v_id, e.chunk ->> 'content', coalesce(e.chunk -> 'metadata', '{}'::jsonb),
           (e.chunk ->> 'embedding')::vector
    from jsonb_array_elements(p_chunks) with ordinality as e (chunk, n)
    order by e.n;
    return v_id;
end;
$$;

-- Delete documents of a knowledge base (their chunks go with them); how many went.
create or replace function public.jelly_delete_documents(p_kb text, p_sources text[])
returns integer
language plpgsql
set search_path = ''
as $$
declare
    v_count integer;
begin
    delete from public.kb_documents d where d.kb = p_kb and d.source = any (p_sources);
    get diagnostics v_count = row_count;
    return v_count;
end;
$$;

-- Only the server may call the writing functions. They run with the caller's
-- rights (security invoker), so row level security already stops the anon key;
-- on Supabase (where these roles exist) execution is also taken away from it.
do $$
declare
    f text;
begin
    foreach f in array array[
        'public.jelly_get_or_create_user(text, text)',
        'public.jelly_add_answer(bigint, text, text, text, jsonb, text[])',
        'public.jelly_knowledge_bases()',
        'public.jelly_replace_document(text, text, text, text, timestamptz, text, int, jsonb)',
        'public.jelly_delete_documents(text, text[])'
    ] loop
        execute format('revoke execute on function %s from public', f);
        if exists (select 1 from pg_roles where rolname = 'anon') then
            execute format('revoke execute on function %s from anon', f);
        end if;
        if exists (select 1 from pg_roles where rolname = 'authenticated') then
            execute format('revoke execute on function %s from authenticated', f);
        end if;
        if exists (select 1 from pg_roles where rolname = 'service_role') then
            execute format('grant execute on function %s to service_role', f);
        end if;
    end loop;
end
$$;

-- Row level security on every JellyChat table, with no policy for anon: the
-- anon key is public by design and must never read anyone's chats. (The chat
-- tables got it in their own migration; `if exists` keeps this file valid
-- where a table is missing, e.g. the migration log under `supabase db push`.)
alter table if exists public.users enable row level security;
alter table if exists public.chat_messages enable row level security;
alter table if exists public.qa enable row level security;
alter table if exists public.kb_documents enable row level security;
alter table if exists public.kb_chunks enable row level security;
alter table if exists public.jelly_schema_migrations enable row level security;

-- Make a running PostgREST (Supabase's API) see the new functions at once.
-- Harmless without one: nobody listens on the channel.
notify pgrst, 'reload schema';
